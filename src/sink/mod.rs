//! Where results go: the feedback server for the stimulus computer and the window
//! (`viewer`); the recorder is the `run` command's event log and QA table.

pub mod feedback;
pub mod viewer;
