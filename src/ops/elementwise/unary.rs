//! The unary elementwise ops, each defined once, here: what it computes, `y = f(x)`; its
//! backward, `dL/dx = dL/dy * f'(x)`, written with whichever of x and y makes it cheapest; what
//! that backward must keep (x, y, or nothing: an op keeps no more than its derivative reads); and
//! the code of its `case` in the CUDA kernels. kernels/elementwise.cu switches on names from
//! kernels/unary_ops.h, which a test generates from these definitions (and fails on when it is
//! stale), so no code is ever typed twice.
//!
//! The CPU kernels (`cpu.rs`) are generic over [`UnaryOp`], so each op's loop is compiled for that
//! op alone and vectorises.

use crate::dtype::Float;

/// What an op's backward reads besides the upstream gradient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Saves {
    /// the input x
    Input,
    /// the output y
    Output,
    /// neither (the derivative is a constant)
    Nothing,
}

/// One unary op over `T` (as dfdx's `UnaryDerivative`).
pub(crate) trait UnaryOp<T: Float>: Copy + Send + Sync + 'static {
    /// Its name in messages and the graph.
    const NAME: &'static str;
    /// Its `case` in kernels/elementwise.cu (`UNARY_<NAME>` in kernels/unary_ops.h).
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    const CODE: i64;
    /// What [`grad`](Self::grad) reads.
    const SAVES: Saves;
    /// The op's scalar (powf's exponent, clamp_min's bound, ...), 0 when it has none.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    fn param(&self) -> T {
        T::ZERO
    }
    /// y = f(x).
    fn f(&self, x: T) -> T;
    /// dL/dx from dL/dy = `g` and the saved value `v` (x or y as [`SAVES`](Self::SAVES) says;
    /// 0 when it is `Nothing`).
    fn grad(&self, g: T, v: T) -> T;
}

/// y = -x;  dy/dx = -1.
#[derive(Clone, Copy)]
pub(crate) struct Neg;
impl<T: Float> UnaryOp<T> for Neg {
    const NAME: &'static str = "neg";
    const CODE: i64 = 0;
    const SAVES: Saves = Saves::Nothing;
    fn f(&self, x: T) -> T {
        -x
    }
    fn grad(&self, g: T, _: T) -> T {
        -g
    }
}

/// y = e^x;  dy/dx = e^x = y.
#[derive(Clone, Copy)]
pub(crate) struct Exp;
impl<T: Float> UnaryOp<T> for Exp {
    const NAME: &'static str = "exp";
    const CODE: i64 = 1;
    const SAVES: Saves = Saves::Output;
    fn f(&self, x: T) -> T {
        x.exp()
    }
    fn grad(&self, g: T, y: T) -> T {
        g * y
    }
}

/// y = ln x (NaN below 0, -inf at 0, as PyTorch);  dy/dx = 1/x.
#[derive(Clone, Copy)]
pub(crate) struct Log;
impl<T: Float> UnaryOp<T> for Log {
    const NAME: &'static str = "log";
    const CODE: i64 = 2;
    const SAVES: Saves = Saves::Input;
    fn f(&self, x: T) -> T {
        x.ln()
    }
    fn grad(&self, g: T, x: T) -> T {
        g / x
    }
}

/// y = sqrt(x);  dy/dx = 1/(2 sqrt(x)) = 1/(2y).
#[derive(Clone, Copy)]
pub(crate) struct Sqrt;
impl<T: Float> UnaryOp<T> for Sqrt {
    const NAME: &'static str = "sqrt";
    const CODE: i64 = 3;
    const SAVES: Saves = Saves::Output;
    fn f(&self, x: T) -> T {
        x.sqrt()
    }
    fn grad(&self, g: T, y: T) -> T {
        g / (T::from_f64(2.0) * y)
    }
}

/// y = |x|;  dy/dx = sign(x), 0 at 0 (the subgradient PyTorch takes).
#[derive(Clone, Copy)]
pub(crate) struct Abs;
impl<T: Float> UnaryOp<T> for Abs {
    const NAME: &'static str = "abs";
    const CODE: i64 = 4;
    const SAVES: Saves = Saves::Input;
    fn f(&self, x: T) -> T {
        x.abs()
    }
    fn grad(&self, g: T, x: T) -> T {
        if x > T::ZERO {
            g
        } else if x < T::ZERO {
            -g
        } else {
            T::ZERO
        }
    }
}

/// y = max(x, 0), NaN staying NaN;  dy/dx = 1 where y > 0, else 0 (so relu'(0) = 0). Reads y,
/// which the next op keeps anyway: a ReLU keeps no extra activation alive.
#[derive(Clone, Copy)]
pub(crate) struct Relu;
impl<T: Float> UnaryOp<T> for Relu {
    const NAME: &'static str = "relu";
    const CODE: i64 = 5;
    const SAVES: Saves = Saves::Output;
    fn f(&self, x: T) -> T {
        // compare rather than max(): NaN stays NaN, as PyTorch
        if x > T::ZERO || x.is_nan() { x } else { T::ZERO }
    }
    fn grad(&self, g: T, y: T) -> T {
        if y > T::ZERO { g } else { T::ZERO }
    }
}

/// y = tanh(x);  dy/dx = 1 - tanh²(x) = 1 - y².
#[derive(Clone, Copy)]
pub(crate) struct Tanh;
impl<T: Float> UnaryOp<T> for Tanh {
    const NAME: &'static str = "tanh";
    const CODE: i64 = 6;
    const SAVES: Saves = Saves::Output;
    fn f(&self, x: T) -> T {
        x.tanh()
    }
    fn grad(&self, g: T, y: T) -> T {
        g * (T::ONE - y * y)
    }
}

/// y = σ(x) = 1 / (1 + e^-x);  dy/dx = σ(x)(1 - σ(x)) = y(1 - y).
#[derive(Clone, Copy)]
pub(crate) struct Sigmoid;
impl<T: Float> UnaryOp<T> for Sigmoid {
    const NAME: &'static str = "sigmoid";
    const CODE: i64 = 7;
    const SAVES: Saves = Saves::Output;
    fn f(&self, x: T) -> T {
        T::ONE / (T::ONE + (-x).exp())
    }
    fn grad(&self, g: T, y: T) -> T {
        g * y * (T::ONE - y)
    }
}

/// y = x^p;  dy/dx = p x^(p-1), and 0 when p = 0 (the constant 1).
#[derive(Clone, Copy)]
pub(crate) struct Powf<T>(pub T);
impl<T: Float> UnaryOp<T> for Powf<T> {
    const NAME: &'static str = "powf";
    const CODE: i64 = 8;
    const SAVES: Saves = Saves::Input;
    fn param(&self) -> T {
        self.0
    }
    fn f(&self, x: T) -> T {
        x.powf(self.0)
    }
    fn grad(&self, g: T, x: T) -> T {
        let p = self.0;
        if p == T::ZERO {
            T::ZERO
        } else {
            g * p * x.powf(p - T::ONE)
        }
    }
}

/// y = max(x, m);  dy/dx = 1 where x >= m, else 0 (PyTorch's clamp_min passes the gradient at
/// the bound).
#[derive(Clone, Copy)]
pub(crate) struct ClampMin<T>(pub T);
impl<T: Float> UnaryOp<T> for ClampMin<T> {
    const NAME: &'static str = "clamp_min";
    const CODE: i64 = 9;
    const SAVES: Saves = Saves::Input;
    fn param(&self) -> T {
        self.0
    }
    fn f(&self, x: T) -> T {
        if x < self.0 { self.0 } else { x }
    }
    fn grad(&self, g: T, x: T) -> T {
        if x >= self.0 { g } else { T::ZERO }
    }
}

/// y = x + s;  dy/dx = 1.
#[derive(Clone, Copy)]
pub(crate) struct AddScalar<T>(pub T);
impl<T: Float> UnaryOp<T> for AddScalar<T> {
    const NAME: &'static str = "add_scalar";
    const CODE: i64 = 10;
    const SAVES: Saves = Saves::Nothing;
    fn param(&self) -> T {
        self.0
    }
    fn f(&self, x: T) -> T {
        x + self.0
    }
    fn grad(&self, g: T, _: T) -> T {
        g
    }
}

/// y = s x;  dy/dx = s.
#[derive(Clone, Copy)]
pub(crate) struct MulScalar<T>(pub T);
impl<T: Float> UnaryOp<T> for MulScalar<T> {
    const NAME: &'static str = "mul_scalar";
    const CODE: i64 = 11;
    const SAVES: Saves = Saves::Nothing;
    fn param(&self) -> T {
        self.0
    }
    fn f(&self, x: T) -> T {
        x * self.0
    }
    fn grad(&self, g: T, _: T) -> T {
        g * self.0
    }
}

#[cfg(test)]
const fn entry<O: UnaryOp<f32>>() -> (&'static str, i64, Saves) {
    (O::NAME, O::CODE, O::SAVES)
}

/// Every op's name, code and saved value: what kernels/unary_ops.h is generated from.
#[cfg(test)]
const CODES: [(&str, i64, Saves); 12] = [
    entry::<Neg>(),
    entry::<Exp>(),
    entry::<Log>(),
    entry::<Sqrt>(),
    entry::<Abs>(),
    entry::<Relu>(),
    entry::<Tanh>(),
    entry::<Sigmoid>(),
    entry::<Powf<f32>>(),
    entry::<ClampMin<f32>>(),
    entry::<AddScalar<f32>>(),
    entry::<MulScalar<f32>>(),
];

/// kernels/unary_ops.h as [`CODES`] makes it.
#[cfg(test)]
fn header() -> String {
    let mut s = String::from(
        "// Generated from src/ops/elementwise/unary.rs (UnaryOp::CODE of every op) by its test\n\
         // `unary_ops_header_is_generated_from_the_definitions`; do not edit: change the Rust\n\
         // definition and run `SMALLGRAD_REGENERATE=1 cargo test --lib unary_ops_header`.\n\
         // v: the value the backward kernel reads (x, y, or none), as UnaryOp::SAVES says.\n\
         #pragma once\n",
    );
    for (name, code, saves) in CODES {
        let v = match saves {
            Saves::Input => "v = x",
            Saves::Output => "v = y",
            Saves::Nothing => "no v",
        };
        s.push_str(&format!(
            "#define UNARY_{:<11} {code:>2}  // {v}\n",
            name.to_uppercase()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::central_difference;

    #[test]
    fn unary_ops_header_is_generated_from_the_definitions() {
        let mut codes: Vec<i64> = CODES.iter().map(|c| c.1).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), CODES.len(), "two ops share a code");
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/kernels/unary_ops.h");
        let want = header();
        if std::env::var("SMALLGRAD_REGENERATE").is_ok_and(|v| v == "1") {
            std::fs::write(path, &want).unwrap();
        }
        let have = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            have == want,
            "kernels/unary_ops.h is stale: run `SMALLGRAD_REGENERATE=1 cargo test --lib unary_ops_header` \
             and commit it"
        );
    }

    #[test]
    fn every_derivative_matches_a_central_difference() {
        // f64, at points away from every kink; Saves says which value grad reads.
        fn check<O: UnaryOp<f64>>(op: O, xs: &[f64]) {
            for &x in xs {
                let g = 0.7;
                let numeric = central_difference(|v| g * op.f(v[0]), &[x])[0];
                let v = match O::SAVES {
                    Saves::Input => x,
                    Saves::Output => op.f(x),
                    Saves::Nothing => 0.0,
                };
                let analytic = op.grad(g, v);
                assert!(
                    (numeric - analytic).abs() <= 1e-6 * (1.0 + analytic.abs()),
                    "{}'({x}): analytic {analytic}, numeric {numeric}",
                    O::NAME
                );
            }
        }
        let xs = [-1.7, -0.4, 0.3, 1.1, 2.5];
        let pos = [0.2, 0.9, 1.6, 3.0];
        check(Neg, &xs);
        check(Exp, &xs);
        check(Log, &pos);
        check(Sqrt, &pos);
        check(Abs, &xs);
        check(Relu, &xs);
        check(Tanh, &xs);
        check(Sigmoid, &xs);
        check(Powf(2.5), &pos);
        check(Powf(-1.5), &pos);
        check(ClampMin(0.1), &xs);
        check(AddScalar(3.0), &xs);
        check(MulScalar(-2.0), &xs);
    }
}
