"""The Python baseline for `cargo bench --bench pipeline_vs_python`: what a lab script with
nibabel + numpy does per volume: read the NIfTI file, take the mask voxels, update a rolling
window z-score (running sums over the last W volumes, like ours). Prints one JSON line with
per-volume timings in ms.

Usage: python3 bench/python_baseline.py DIR MASK.npy WINDOW
(DIR holds vol_0001.nii.gz ..., MASK.npy the flat voxel indices in x-fastest order)."""
import json
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np


def main():
    folder, mask_path, window = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    mask = np.load(mask_path)
    files = sorted(folder.glob("vol_*.nii*"))
    ring = None
    sums = sq = None
    count = 0
    times = []
    for i, f in enumerate(files):
        t = time.perf_counter()
        data = np.asarray(nib.load(str(f)).get_fdata(dtype=np.float32))
        x = data.reshape(-1, order="F")[mask].astype(np.float64)
        if ring is None:
            ring = np.zeros((window, x.size))
            sums = np.zeros(x.size)
            sq = np.zeros(x.size)
        slot = i % window
        if count == window:
            old = ring[slot]
            sums -= old
            sq -= old * old
        else:
            count += 1
        ring[slot] = x
        sums += x
        sq += x * x
        mean = sums / count
        sd = np.sqrt(np.maximum(sq / count - mean * mean, 0.0))
        z = np.where(sd > 1e-6, (x - mean) / np.where(sd > 1e-6, sd, 1.0), 0.0)
        times.append((time.perf_counter() - t) * 1e3)
        assert z.shape == x.shape
    times.sort()
    print(json.dumps({"volumes": len(times), "median_ms": times[len(times) // 2], "mask_voxels": int(mask.size)}))


if __name__ == "__main__":
    main()
