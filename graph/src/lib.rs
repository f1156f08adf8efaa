//! # lapis-graph
//!
//! The tape-based autodiff layer of lapis:
//!
//! - [`var`]: [`Tape`], [`Var`], [`backward`] (reverse mode in topological order,
//!   accumulation for reused Vars, [`Var::detach`] and [`Tape::no_grad`], intermediate
//!   buffers freed as they are consumed, gradients for inputs as well as parameters);
//! - [`ops`]: every op of `lapis_ops` on the tape, each VJP next to its forward — the
//!   foundation ops, the Laplace operator (real and phased), the Laplace covariance model
//!   ([`Lcm`]) and the LapSum soft top-k family;
//! - [`gradcheck`]: device gradients of any graph function against central finite
//!   differences of its f64 reference;
//! - [`nn`]: the named parameter registry with typed handles ([`nn::Param`], [`nn::ParamVars`])
//!   and the layers (LAPLEX included);
//! - [`optim`]: SGD with momentum, Adam/AdamW (the [`optim::Optimizer`] trait, with its state
//!   for checkpoints), clipping, warmup + cosine;
//! - [`checkpoint`]: named tensors as safetensors files, typed errors for broken files.
//!
//! It re-exports the tensor layer it builds on.
//!
//! ```no_run
//! use lapis_graph::lapis_ops::{self, Device, Tensor};
//! use lapis_graph::nn::{Activation, LaplexConfig, LaplexLinear, Mlp, Params};
//! use lapis_graph::optim::{clip_grad_norm, Adam};
//! use lapis_graph::{backward, Tape};
//!
//! let dev = Device::auto()?;
//! let mut params = Params::new();
//! let body = Mlp::new(&mut params, "body", &dev, &[64, 128], Activation::Gelu, 1)?;
//! let cfg = LaplexConfig::new(128, 10).heads(4).phased().seed(2);
//! let head = LaplexLinear::new(&mut params, "head", &dev, &cfg)?;
//! let mut opt = Adam::adamw(1e-3, 1e-2);
//! opt.set_lr_scale(&params.matching(".s"), 10.0)?; // anchors learn faster (LAPLEX §1.2)
//!
//! let x = lapis_ops::normal(&dev, &[32, 64], 0.0, 1.0, 7)?; // a batch
//! let y = Tensor::from_slice(&dev, &[32, 10], &[0.1f32; 320])?; // soft targets
//! for _step in 0..10 {
//!     let tape = Tape::new();
//!     let vars = params.on_tape(&tape);
//!     let h = body.forward(&vars, &tape.constant(x.clone()))?.gelu()?;
//!     let logits = head.forward(&vars, &h)?;
//!     let loss = logits
//!         .log_softmax(1)?
//!         .mul(&tape.constant(y.clone()))?
//!         .sum_all()?
//!         .mul_scalar(-1.0 / 32.0)?;
//!     let _sparse = logits.soft_topk(2.0, 0.1)?; // scalars: an f32, a Tensor or a Var
//!     let g = backward(&loss)?;
//!     let mut grads: Vec<Tensor> = vars.iter().map(|v| g.get(v).unwrap().clone()).collect();
//!     clip_grad_norm(&mut grads, 1.0)?;
//!     opt.step(&mut params.tensors_mut(), &grads)?;
//! }
//! params.save("model.safetensors")?; // loadable with safetensors.torch.load_file
//! # Ok::<(), lapis_graph::lapis_ops::LapisError>(())
//! ```

pub use lapis_ops;

pub mod checkpoint;
pub mod gradcheck;
pub mod ops;
pub mod var;

pub use ops::{Lcm, ScalarArg, TruncatedVar};
pub use var::{backward, Grads, Tape, Var};
pub mod nn;
pub mod optim;
mod rng;
