//! DICOM from the scanner. So far it holds the Siemens CSA private header reader (`csa`), which
//! the mosaic reader needs for slice count, slice direction and slice timing; the readers that
//! turn a mosaic, an XA enhanced file or a single-slice series into a `Volume` are not in yet,
//! so `run` still takes NIfTI only.

pub mod csa;
