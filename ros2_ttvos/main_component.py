"""Keep each object's search region on the object's main piece (numpy; no torch needed).

The search region (``model.search_region``) follows an object's last mask. When a look-alike
passes close by, the mask can spread onto it; once the two separate, the mask has two pieces and
the region follows both, so the look-alike keeps a region of its own and the spill lasts. After
each step the Tracker therefore keeps, in the newest mask of each object's state, only the
largest piece: pieces are the connected parts of the mask (foreground above one half at stride
8) after joining those less than ``GAP`` cells apart, so a body split by a thin occluder stays
whole. The published labels of that frame are not changed. Chosen on the hold-out sequences
(docs/accuracy.md, the main piece).
"""

import cv2
import numpy as np

GAP = 4  # cells (stride 8 at the internal size): pieces closer than this count as one
NEWEST_BACKGROUND, NEWEST_FOREGROUND = 4, 5  # channels of the newest frame in ``hist``


def keep_main_component(hist: np.ndarray, gap: int = GAP) -> np.ndarray:
    """``hist`` (N, 6, H/8, W/8), the objects' mask history, with each object's newest foreground
    cut to its largest piece (background raised to match); a mask of one piece is unchanged."""
    kept = hist.copy()
    join = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * gap + 1, 2 * gap + 1))
    for row in kept:
        foreground = row[NEWEST_FOREGROUND]
        mask = (foreground > 0.5).astype(np.uint8)
        if not mask.any():
            continue
        count, pieces = cv2.connectedComponents(cv2.dilate(mask, join))
        if count <= 2:  # background and one piece
            continue
        sizes = np.bincount(pieces[mask > 0], minlength=count)[1:]
        main = pieces == 1 + int(np.argmax(sizes))
        row[NEWEST_FOREGROUND] = np.where(main, foreground, 0.0)
        row[NEWEST_BACKGROUND] = 1.0 - row[NEWEST_FOREGROUND]
    return kept
