"""ament_python package ros2_ttvos: the TTVOS library, its CLIs and the ROS 2 node."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ros2_ttvos"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={
        PACKAGE: [
            "weights/*.pt",
            "weights/*.md",
            "sample_data/*.md",
            "sample_data/*/*/*/*",
            "sample_data/ImageSets/*/*",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/weights", glob(f"{PACKAGE}/weights/*.pt")),
    ],
    install_requires=["setuptools"],
    zip_safe=False,
    maintainer="ros2_ttvos maintainers",
    maintainer_email="maintainers@ros2-ttvos.dev",
    description="TTVOS video object segmentation: streaming tracker library and ROS 2 node",
    license="Apache-2.0",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "ttvos-demo = ros2_ttvos.demo:main",
            "ttvos-ablate = ros2_ttvos.ablation:main",
            "ttvos-bag = ros2_ttvos.ros.bag:main",
            "ttvos-bench = ros2_ttvos.bench:main",
            "ttvos-data = ros2_ttvos.data_cli:main",
            "ttvos-eval = ros2_ttvos.evaluate:main",
            "ttvos-export = ros2_ttvos.export:main",
            "ttvos-occlusion = ros2_ttvos.occlusion:main",
            "ttvos-train = ros2_ttvos.train:main",
            "ttvos-box-train = ros2_ttvos.box_train:main",
            "ttvos_node = ros2_ttvos.ros.node:main",
        ],
    },
)
