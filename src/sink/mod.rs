//! Where results go: the feedback server for the stimulus computer (the recorder is the `run`
//! command's event log and QA table for now).

pub mod feedback;
