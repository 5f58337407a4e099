"""Cut the small MNIST sample that ships inside the package from the full MNIST files.

    python scripts/make_sample.py ../shared/data/mnist src/fastidx/data/mnist-sample

The first 1,000 training and the first 200 test images and labels, gzipped IDX (about 200 KB).
"""

import sys
from pathlib import Path

import fastidx

COUNTS = {"train": 1000, "t10k": 200}


def main(source: str, dest: str) -> None:
    source_dir, dest_dir = Path(source), Path(dest)
    dest_dir.mkdir(parents=True, exist_ok=True)
    for prefix, count in COUNTS.items():
        for kind, idx in (("images", 3), ("labels", 1)):
            name = f"{prefix}-{kind}-idx{idx}-ubyte.gz"
            array = fastidx.read_idx(source_dir / name)[:count]
            fastidx.write_idx(dest_dir / name, array)
            print(f"{dest_dir / name}: {array.shape} {(dest_dir / name).stat().st_size} bytes")


if __name__ == "__main__":
    main(*sys.argv[1:3])
