//! Models: the CLIP vision transformer and its Hugging Face weight loading. The projector and
//! the generator come with their issues.

pub mod clip;
pub mod clip_text;
pub mod load;
pub mod preprocess;
pub mod targets;
pub mod tokenizer;
