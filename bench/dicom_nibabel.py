"""nibabel's DICOM reader, the way pyneal reads a volume (Siemens_utils.processMosaicFile:
`mosaic_to_nii` then `as_closest_canonical`): pydicom parse, nibabel's wrapper (mosaic un-tiling
or multi-frame sorting), a NIfTI image with its affine, reoriented to RAS+, its voxels as a
float32 array: the same work as ours (an f32 volume and its affine in memory). Timed inside
Python (interpreter start-up excluded), best of ROUNDS passes over the files; prints ms per
volume.

Usage: python3 bench/dicom_nibabel.py ROUNDS FILE... (needs `pip install nibabel pydicom`).
"""
import sys
import time
import warnings

import nibabel as nib
import numpy as np
import pydicom
from nibabel.nicom import dicomwrappers

warnings.simplefilter("ignore")
rounds = int(sys.argv[1])
files = sys.argv[2:]
best = float("inf")
for _ in range(rounds):
    start = time.perf_counter()
    for f in files:
        wrapper = dicomwrappers.wrapper_from_data(pydicom.dcmread(f))
        # mosaic_to_nii's body: the wrapper's data and its LPS affine flipped to RAS.
        image = nib.Nifti1Image(wrapper.get_data(), np.diag([-1, -1, 1, 1]) @ wrapper.affine)
        image = nib.as_closest_canonical(image)
        # x fastest, as ours (and NIfTI): one materialised float32 copy.
        data = np.array(image.dataobj, dtype=np.float32, order="F")
        assert data.ndim == 3 and data.flags.f_contiguous
    best = min(best, (time.perf_counter() - start) / len(files))
print(f"{best * 1e3:.3f}")
