//! The UNet blocks Karlo uses, one struct per direction: a down block is diffusers'
//! `ResnetDownsampleBlock2D` (no attentions) or `SimpleCrossAttnDownBlock2D` (an added-KV
//! attention after each ResNet), downsampling with a ResNet (`down=True`) rather than a strided
//! convolution; up blocks likewise (`ResnetUpsampleBlock2D`, `SimpleCrossAttnUpBlock2D`, each
//! ResNet fed the next skip connection); the mid block is `UNetMidBlock2DSimpleCrossAttn` (with
//! attentions) or `UNetMidBlock2D` without attention (the super-resolution UNets'). Field names
//! are diffusers' (`resnets`, `attentions`, `downsamplers.0`, `upsamplers.0`).

use burn::prelude::*;

use super::attention::{AddedKvAttention, CrossContext};
use super::config::BlockKind;
use super::resnet::{Resample, ResnetBlock2D, ResnetSettings};

/// Attention sizes of a block: heads of `head_dim` over tokens of `context_dim`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSettings {
    pub head_dim: usize,
    pub context_dim: usize,
}

fn attention_for<B: Backend>(
    kind: BlockKind,
    channels: usize,
    a: AttentionSettings,
    groups: usize,
    device: &B::Device,
) -> Option<AddedKvAttention<B>> {
    (kind == BlockKind::SimpleCrossAttn).then(|| {
        AddedKvAttention::new(
            channels,
            channels / a.head_dim,
            a.head_dim,
            a.context_dim,
            groups,
            device,
        )
    })
}

#[derive(Module, Debug)]
pub struct DownBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<AddedKvAttention<B>>,
    pub downsamplers: Vec<ResnetBlock2D<B>>,
}

impl<B: Backend> DownBlock<B> {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: BlockKind,
        layers: usize,
        input: usize,
        output: usize,
        downsample: bool,
        r: &ResnetSettings,
        a: AttentionSettings,
        device: &B::Device,
    ) -> DownBlock<B> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let from = if i == 0 { input } else { output };
            resnets.push(ResnetBlock2D::new(from, output, r, Resample::None, device));
            attentions.extend(attention_for(kind, output, a, r.groups, device));
        }
        DownBlock {
            resnets,
            attentions,
            downsamplers: downsample
                .then(|| ResnetBlock2D::new(output, output, r, Resample::Down, device))
                .into_iter()
                .collect(),
        }
    }

    /// Returns the output and pushes every intermediate state onto `skips`.
    pub fn forward(
        &self,
        mut h: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        context: Option<&CrossContext<B>>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            h = resnet.forward(h, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h, context);
            }
            skips.push(h.clone());
        }
        for down in &self.downsamplers {
            h = down.forward(h, temb.clone());
            skips.push(h.clone());
        }
        h
    }
}

#[derive(Module, Debug)]
pub struct UpBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<AddedKvAttention<B>>,
    pub upsamplers: Vec<ResnetBlock2D<B>>,
}

impl<B: Backend> UpBlock<B> {
    /// `input`: channels of the deepest skip this block takes (the next level's), `previous`: of
    /// the block below; as diffusers' `get_up_block` arguments.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        kind: BlockKind,
        layers: usize,
        input: usize,
        output: usize,
        previous: usize,
        upsample: bool,
        r: &ResnetSettings,
        a: AttentionSettings,
        device: &B::Device,
    ) -> UpBlock<B> {
        let mut resnets = Vec::new();
        let mut attentions = Vec::new();
        for i in 0..layers {
            let skip = if i + 1 == layers { input } else { output };
            let from = if i == 0 { previous } else { output };
            resnets.push(ResnetBlock2D::new(
                from + skip,
                output,
                r,
                Resample::None,
                device,
            ));
            attentions.extend(attention_for(kind, output, a, r.groups, device));
        }
        UpBlock {
            resnets,
            attentions,
            upsamplers: upsample
                .then(|| ResnetBlock2D::new(output, output, r, Resample::Up, device))
                .into_iter()
                .collect(),
        }
    }

    /// Takes one skip connection per ResNet from the end of `skips`. A missing skip (only
    /// possible with a config diffusers would also fail on) leaves the state as it is.
    pub fn forward(
        &self,
        mut h: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        context: Option<&CrossContext<B>>,
        skips: &mut Vec<Tensor<B, 4>>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            if let Some(skip) = skips.pop() {
                h = Tensor::cat(vec![h, skip], 1);
            }
            h = resnet.forward(h, temb.clone());
            if let Some(attn) = self.attentions.get(i) {
                h = attn.forward(h, context);
            }
        }
        for up in &self.upsamplers {
            h = up.forward(h, temb.clone());
        }
        h
    }
}

/// Two ResNets, with an added-KV attention between them when `attention` is given.
#[derive(Module, Debug)]
pub struct MidBlock<B: Backend> {
    pub resnets: Vec<ResnetBlock2D<B>>,
    pub attentions: Vec<AddedKvAttention<B>>,
}

impl<B: Backend> MidBlock<B> {
    pub fn new(
        channels: usize,
        r: &ResnetSettings,
        attention: Option<AttentionSettings>,
        device: &B::Device,
    ) -> MidBlock<B> {
        let kind = match attention {
            Some(_) => BlockKind::SimpleCrossAttn,
            None => BlockKind::Resnet,
        };
        let a = attention.unwrap_or(AttentionSettings {
            head_dim: 1,
            context_dim: channels,
        });
        MidBlock {
            resnets: (0..2)
                .map(|_| ResnetBlock2D::new(channels, channels, r, Resample::None, device))
                .collect(),
            attentions: attention_for(kind, channels, a, r.groups, device)
                .into_iter()
                .collect(),
        }
    }

    pub fn forward(
        &self,
        mut h: Tensor<B, 4>,
        temb: &Tensor<B, 2>,
        context: Option<&CrossContext<B>>,
    ) -> Tensor<B, 4> {
        for (i, resnet) in self.resnets.iter().enumerate() {
            if i > 0 {
                if let Some(attn) = self.attentions.get(i - 1) {
                    h = attn.forward(h, context);
                }
            }
            h = resnet.forward(h, temb.clone());
        }
        h
    }
}
