//! [`Rng`]: smallgrad's own seeded pseudo-random generator.
//!
//! Algorithm: **xoshiro256\*\*** (Blackman & Vigna), seeded by running **SplitMix64** over the
//! `u64` seed. Uniforms take the top 53 bits (`f64` in [0, 1)); normals use the Box-Muller
//! transform on two uniforms (one normal per call, no cached second value, so the whole state
//! is the four words in [`Rng::state`]). Tensors are always drawn on the host, so a seed gives
//! the same values on every device and with any thread count.

/// A seeded, reproducible pseudo-random generator (xoshiro256\*\*). Its state is public so that
/// checkpoints can save and restore it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    /// The four words of xoshiro256\*\* state (never all zero).
    pub state: [u64; 4],
}

fn splitmix64(x: &mut u64) -> u64 {
    *x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *x;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// A generator seeded from `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let state = [
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
            splitmix64(&mut x),
        ];
        Rng { state }
    }

    /// Restores a generator from a saved [`Rng::state`]. An all-zero state (which xoshiro
    /// cannot leave) is replaced by the state of `Rng::new(0)`.
    pub fn from_state(state: [u64; 4]) -> Rng {
        if state == [0; 4] { Rng::new(0) } else { Rng { state } }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal N(0, 1) by Box-Muller.
    pub fn normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the log is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Uniform integer in [0, n) (n > 0), by rejection so that it is unbiased.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        let zone = u64::MAX - (u64::MAX % n);
        loop {
            let v = self.next_u64();
            if v < zone {
                return (v % n) as usize;
            }
        }
    }

    /// Shuffles a slice in place (Fisher-Yates).
    pub fn shuffle<X>(&mut self, xs: &mut [X]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i + 1);
            xs.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moments_are_plausible() {
        let mut r = Rng::new(7);
        let n = 200_000;
        let (mut s, mut s2, mut u) = (0.0, 0.0, 0.0);
        for _ in 0..n {
            let x = r.normal();
            s += x;
            s2 += x * x;
            u += r.uniform();
        }
        let mean = s / n as f64;
        let var = s2 / n as f64 - mean * mean;
        assert!(mean.abs() < 0.01, "mean {mean}");
        assert!((var - 1.0).abs() < 0.02, "var {var}");
        assert!((u / n as f64 - 0.5).abs() < 0.01);
    }

    #[test]
    fn state_roundtrips() {
        let mut a = Rng::new(3);
        a.next_u64();
        let mut b = Rng::from_state(a.state);
        assert_eq!(a.next_u64(), b.next_u64());
    }
}
