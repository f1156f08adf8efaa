//! Seeded, resumable mini-batches: [`Batches`], and the PRNG behind them,
//! [`SplitMix64`].
//!
//! Epoch `e` of a [`Batches`] is a permutation of `0..n` that depends only on
//! `(seed, e)`, cut into consecutive batches of `batch` rows (the last one shorter,
//! unless `drop_last`). Global step `s` is batch `s % steps_per_epoch` of epoch
//! `s / steps_per_epoch`, so a run resumed at step `s` ([`Batches::at_step`],
//! [`Batches::from_step`]) sees exactly the batches an uninterrupted run would have.
//!
//! **The PRNG**, written here so that the stream never changes with a dependency's
//! version: SplitMix64 (Steele, Lea & Flood, 2014; the generator Java's
//! `SplittableRandom` uses and the one recommended to seed xoshiro): the state advances
//! by the odd constant `0x9E3779B97F4A7C15` and each output is the state passed through
//! the `mix64` finaliser (`z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
//! z *= 0x94D049BB133111EB; z ^= z >> 31`). [`SplitMix64::stream`] starts the stream for
//! `(seed, e)` at `mix64(mix64(seed) + e · 0x9E3779B97F4A7C15)`: distinct epochs of one
//! seed start at distinct states. Bounded integers use Lemire's multiply-and-reject
//! method (unbiased); the permutation is the Fisher–Yates shuffle (Durstenfeld's form:
//! for `i` from `n − 1` down to 1, swap `i` with a uniform `j ∈ 0..=i`).

use lapis_ops::{LapisError, Result};

const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// The SplitMix64 output finaliser (a bijection of `u64`).
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The SplitMix64 pseudo-random generator (see the [module docs](self)). Not
/// cryptographic; fast, 64 bits of state, passes BigCrush.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose state starts at `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// The independent stream `stream` of `seed` (e.g. one per epoch): state
    /// `mix64(mix64(seed) + stream · 0x9E3779B97F4A7C15)`.
    pub fn stream(seed: u64, stream: u64) -> SplitMix64 {
        SplitMix64::new(mix64(mix64(seed).wrapping_add(stream.wrapping_mul(GAMMA))))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GAMMA);
        mix64(self.state)
    }

    /// A uniform integer in `0..bound` (Lemire's unbiased multiply-and-reject);
    /// 0 when `bound` is 0.
    pub fn below(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let mut m = self.next_u64() as u128 * bound as u128;
        if (m as u64) < bound {
            let threshold = bound.wrapping_neg() % bound;
            while (m as u64) < threshold {
                m = self.next_u64() as u128 * bound as u128;
            }
        }
        (m >> 64) as u64
    }

    /// A uniform f64 in `[0, 1)` (the top 53 bits).
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Shuffles `xs` in place (Fisher–Yates; every permutation equally likely).
    pub fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            xs.swap(i, j);
        }
    }
}

/// Seeded shuffled mini-batches over `n` samples. See the [module docs](self).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batches {
    n: usize,
    batch: usize,
    seed: u64,
    drop_last: bool,
}

impl Batches {
    /// Batches of `batch` rows over samples `0..n`, shuffled per epoch from `seed`; the
    /// last batch of an epoch is shorter when `batch` does not divide `n` (see
    /// [`drop_last`](Self::drop_last)). `n` and `batch` must be at least 1.
    pub fn new(n: usize, batch: usize, seed: u64) -> Result<Batches> {
        if n == 0 {
            return Err(LapisError::invalid(
                "Batches::new",
                "n",
                n,
                "need at least one sample to batch",
            ));
        }
        if batch == 0 {
            return Err(LapisError::invalid(
                "Batches::new",
                "batch",
                batch,
                "the batch size must be at least 1",
            ));
        }
        Ok(Batches {
            n,
            batch,
            seed,
            drop_last: false,
        })
    }

    /// With `drop = true`, each epoch's short last batch is dropped, so every batch has
    /// exactly `batch` rows (the dropped rows differ from epoch to epoch). Fails if that
    /// would leave no batch at all (`batch > n`).
    pub fn drop_last(mut self, drop: bool) -> Result<Batches> {
        if drop && self.batch > self.n {
            return Err(LapisError::invalid(
                "Batches::drop_last",
                "batch",
                self.batch,
                format!(
                    "with drop_last, a batch larger than the {} samples leaves no batch",
                    self.n
                ),
            ));
        }
        self.drop_last = drop;
        Ok(self)
    }

    /// The number of samples `n`.
    pub fn samples(&self) -> usize {
        self.n
    }

    /// The batch size.
    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The seed.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Whether short last batches are dropped.
    pub fn drops_last(&self) -> bool {
        self.drop_last
    }

    /// Batches per epoch: `n / batch` with `drop_last`, else `ceil(n / batch)`; ≥ 1.
    pub fn steps_per_epoch(&self) -> usize {
        if self.drop_last {
            self.n / self.batch
        } else {
            self.n.div_ceil(self.batch)
        }
    }

    /// The shuffled order of epoch `epoch`: a permutation of `0..n` that depends only on
    /// `(seed, epoch)`.
    pub fn permutation(&self, epoch: u64) -> Vec<usize> {
        let mut perm: Vec<usize> = (0..self.n).collect();
        SplitMix64::stream(self.seed, epoch).shuffle(&mut perm);
        perm
    }

    /// The batches of epoch `epoch`: [`permutation`](Self::permutation) cut into
    /// [`steps_per_epoch`](Self::steps_per_epoch) consecutive batches.
    pub fn epoch(&self, epoch: u64) -> Vec<Vec<usize>> {
        let perm = self.permutation(epoch);
        (0..self.steps_per_epoch())
            .map(|k| self.cut(&perm, k).to_vec())
            .collect()
    }

    /// The epoch and rows of global step `step` (counting from 0 across epochs): batch
    /// `step % steps_per_epoch` of epoch `step / steps_per_epoch`, the same rows
    /// [`epoch`](Self::epoch) gives.
    pub fn at_step(&self, step: u64) -> (u64, Vec<usize>) {
        let spe = self.steps_per_epoch() as u64;
        let epoch = step / spe;
        let perm = self.permutation(epoch);
        (epoch, self.cut(&perm, (step % spe) as usize).to_vec())
    }

    /// An endless iterator over the steps from `step` on (up to step `u64::MAX − 1`), as
    /// [`at_step`](Self::at_step) gives them, shuffling each epoch once.
    pub fn from_step(&self, step: u64) -> StepIter {
        StepIter {
            batches: self.clone(),
            step,
            cached: None,
        }
    }

    /// Batch `k` of an epoch's permutation.
    fn cut<'a>(&self, perm: &'a [usize], k: usize) -> &'a [usize] {
        let start = k * self.batch;
        &perm[start..(start + self.batch).min(self.n)]
    }
}

/// One step of a [`StepIter`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The global step, counting from 0 across epochs.
    pub step: u64,
    /// The epoch the step belongs to.
    pub epoch: u64,
    /// The sample indices of the batch.
    pub rows: Vec<usize>,
}

/// The endless iterator of [`Batches::from_step`].
#[derive(Clone, Debug)]
pub struct StepIter {
    batches: Batches,
    step: u64,
    cached: Option<(u64, Vec<usize>)>,
}

impl Iterator for StepIter {
    type Item = Step;

    fn next(&mut self) -> Option<Step> {
        let spe = self.batches.steps_per_epoch() as u64;
        let epoch = self.step / spe;
        if self.cached.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.cached = Some((epoch, self.batches.permutation(epoch)));
        }
        let perm = &self.cached.as_ref()?.1;
        let rows = self.batches.cut(perm, (self.step % spe) as usize).to_vec();
        let item = Step {
            step: self.step,
            epoch,
            rows,
        };
        self.step = self.step.checked_add(1)?;
        Some(item)
    }
}
