//! The guide's chapters (`docs/guide/*.md`), compiled and run as doctests so that a guide whose
//! code breaks fails `cargo test`. Read them on GitHub or in `docs/guide/`.

/// Chapter 1: reverse-mode autodiff by hand, then with smallgrad.
#[doc = include_str!("../docs/guide/01-autodiff-by-hand.md")]
pub struct Chapter01;

/// Chapter 2: tensors and broadcasting.
#[doc = include_str!("../docs/guide/02-tensors-and-broadcasting.md")]
pub struct Chapter02;

/// Chapter 3: the backward of every op, derived.
#[doc = include_str!("../docs/guide/03-backward-of-every-op.md")]
pub struct Chapter03;

/// Chapter 4: checking gradients.
#[doc = include_str!("../docs/guide/04-checking-gradients.md")]
pub struct Chapter04;

/// Chapter 5: the backends.
#[doc = include_str!("../docs/guide/05-backends.md")]
pub struct Chapter05;

/// Chapter 6: training a ResNet with the cosine loss.
#[doc = include_str!("../docs/guide/06-training-a-resnet-with-the-cosine-loss.md")]
pub struct Chapter06;
