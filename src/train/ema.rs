//! Exponential moving average of a model's weights (the generator samples with the average):
//! parameters are matched by visiting both modules in the same order.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::prelude::*;

struct Collect<B: Backend> {
    values: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let n = t.shape().num_elements();
        self.values.push(t.reshape([n]));
    }
}

struct Blend<B: Backend> {
    values: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let Some(new) = self.values.next() else {
            return param;
        };
        let decay = self.decay;
        param.map(|old| {
            let shape = old.shape();
            old.clone() * decay + new.reshape(shape) * (1.0 - decay)
        })
    }
}

/// `average ← decay · average + (1 - decay) · current`, parameter by parameter.
pub fn update<B: Backend, M: Module<B>>(average: M, current: &M, decay: f64) -> M {
    let mut collect = Collect { values: Vec::new() };
    current.visit(&mut collect);
    average.map(&mut Blend {
        values: collect.values.into_iter(),
        decay,
    })
}
