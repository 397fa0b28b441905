"""A run's ``log.csv``: one row a step (losses, rates, hold-out checks), appended as the run
goes, cut back to a checkpoint's step on resume, merged with a chunk's rows (``travel.py``)."""

import csv
import gzip
import io
from pathlib import Path
from typing import Any, Dict, Iterable, List, Sequence


def append_row(path: Path, fields: Sequence[str], row: Dict[str, Any]) -> None:
    """Append ``row`` (its ``fields`` only, blanks for the missing ones), with a header when new."""
    new = not path.is_file()
    with open(path, "a", newline="") as handle:
        writer = csv.DictWriter(handle, fields)
        if new:
            writer.writeheader()
        writer.writerow({key: row.get(key, "") for key in fields})


def read_rows(path: Path) -> List[Dict[str, str]]:
    """Rows of ``path`` or of its compressed form ``path.gz`` (a travelling copy's); [] when neither."""
    if path.is_file():
        return list(csv.DictReader(io.StringIO(path.read_text())))
    packed = path.with_name(path.name + ".gz")
    if packed.is_file():
        return list(csv.DictReader(io.StringIO(gzip.decompress(packed.read_bytes()).decode())))
    return []


def write_rows(path: Path, fields: Sequence[str], rows: Iterable[Dict[str, str]]) -> None:
    """Replace ``path`` with ``rows`` (columns outside ``fields`` dropped)."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def truncate_rows(path: Path, fields: Sequence[str], step: int) -> None:
    """Drop the rows written after ``step`` (work lost with a checkpoint the run resumes before)."""
    if path.is_file():
        write_rows(path, fields, [row for row in read_rows(path) if int(row["step"]) <= step])
