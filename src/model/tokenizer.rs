//! Text → token ids for the CLIP text tower, with the `tokenizers` crate reading the model's
//! `tokenizer.json` (Hugging Face's own format): start- and end-of-text added by the file's
//! post-processor, truncated to the context length with end-of-text kept last, padded with the
//! pad id (CLIP pads with end-of-text).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    #[error("{path}: not a usable tokenizer.json: {message}")]
    Load { path: PathBuf, message: String },
    #[error("cannot tokenise {text:?}: {message}")]
    Encode { text: String, message: String },
}

pub struct ClipTokenizer {
    inner: tokenizers::Tokenizer,
    context: usize,
    eos: u32,
    pad: u32,
}

impl ClipTokenizer {
    /// `context` is the text tower's `max_position_embeddings` (77 for OpenAI CLIP).
    pub fn from_file(
        path: &Path,
        context: usize,
        eos: u32,
        pad: u32,
    ) -> Result<ClipTokenizer, TokenizerError> {
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| TokenizerError::Load {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        Ok(ClipTokenizer {
            inner,
            context,
            eos,
            pad,
        })
    }

    /// Exactly `context` ids: start-of-text, the text, end-of-text, padding.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode(text, true)
            .map_err(|e| TokenizerError::Encode {
                text: text.to_string(),
                message: e.to_string(),
            })?;
        let mut ids = encoding.get_ids().to_vec();
        if ids.len() > self.context {
            ids.truncate(self.context);
            if let Some(last) = ids.last_mut() {
                *last = self.eos;
            }
        }
        ids.resize(self.context, self.pad);
        Ok(ids)
    }
}
