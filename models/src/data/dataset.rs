//! [`Dataset`]: samples on the host, uploaded to a device a batch of rows at a time.
//!
//! A dataset is `len` samples of one per-sample `shape` (`[64]` for a flattened 8x8
//! image, `[C, H, W]` for an image, `[d]` for a table row), stored row-major in one flat
//! `Vec<f32>` of `len * dim` values, where `dim` is the product of `shape`. It may carry
//! one class label per sample (`u32` in `0..classes`), and/or `target_dim` f32 regression
//! targets per sample. Every constructor checks these invariants, so the accessors and
//! the tensor uploads never see an inconsistent dataset.

use lapis_ops::{Device, LapisError, Result, Tensor};

/// Samples with a per-sample shape, optional class labels and optional regression
/// targets. See the [module docs](self).
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    name: String,
    shape: Vec<usize>,
    dim: usize,
    features: Vec<f32>,
    labels: Option<(Vec<u32>, usize)>,
    targets: Option<(Vec<f32>, usize)>,
    feature_names: Option<Vec<String>>,
}

/// Product of `shape`, or an error if a dimension is 0, the shape is empty, or it
/// overflows.
fn shape_dim(op: &'static str, shape: &[usize]) -> Result<usize> {
    if shape.is_empty() || shape.contains(&0) {
        return Err(LapisError::invalid(
            op,
            "shape",
            shape,
            "the per-sample shape needs at least one dimension and every dimension must be at least 1",
        ));
    }
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| LapisError::invalid(op, "shape", shape, "the sample size overflows usize"))
}

impl Dataset {
    /// A dataset named `name` of samples of shape `shape`, stored row-major in `features`
    /// (`features.len()` must be a multiple of the product of `shape`; zero samples is
    /// allowed). No labels, no targets.
    pub fn new(name: impl Into<String>, shape: &[usize], features: Vec<f32>) -> Result<Dataset> {
        let dim = shape_dim("Dataset::new", shape)?;
        if features.len() / dim * dim != features.len() {
            return Err(LapisError::invalid(
                "Dataset::new",
                "features.len()",
                features.len(),
                format!("must be a multiple of the sample size {dim} (shape {shape:?})"),
            ));
        }
        Ok(Dataset {
            name: name.into(),
            shape: shape.to_vec(),
            dim,
            features,
            labels: None,
            targets: None,
            feature_names: None,
        })
    }

    /// Attaches one class label per sample; every label must be below `classes`
    /// (`classes ≥ 1`). Replaces any labels already attached.
    pub fn with_labels(mut self, labels: Vec<u32>, classes: usize) -> Result<Dataset> {
        if labels.len() != self.len() {
            return Err(LapisError::invalid(
                "Dataset::with_labels",
                "labels.len()",
                labels.len(),
                format!("need one label per sample ({} samples)", self.len()),
            ));
        }
        if classes == 0 || classes > u32::MAX as usize {
            return Err(LapisError::invalid(
                "Dataset::with_labels",
                "classes",
                classes,
                "the class count must be in 1..=u32::MAX",
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= classes)
        {
            return Err(LapisError::invalid(
                "Dataset::with_labels",
                "labels",
                l,
                format!("label of sample {i} is not below the class count {classes}"),
            ));
        }
        self.labels = Some((labels, classes));
        Ok(self)
    }

    /// Attaches `target_dim` f32 regression targets per sample (row-major,
    /// `targets.len() == len * target_dim`, `target_dim ≥ 1`). Replaces any targets
    /// already attached.
    pub fn with_targets(mut self, targets: Vec<f32>, target_dim: usize) -> Result<Dataset> {
        if target_dim == 0 {
            return Err(LapisError::invalid(
                "Dataset::with_targets",
                "target_dim",
                target_dim,
                "must be at least 1",
            ));
        }
        if Some(targets.len()) != self.len().checked_mul(target_dim) {
            return Err(LapisError::invalid(
                "Dataset::with_targets",
                "targets.len()",
                targets.len(),
                format!(
                    "need {target_dim} targets per sample ({} samples)",
                    self.len()
                ),
            ));
        }
        self.targets = Some((targets, target_dim));
        Ok(self)
    }

    /// Attaches a name to each of the `dim` feature values (a CSV file's column names).
    pub fn with_feature_names(mut self, names: Vec<String>) -> Result<Dataset> {
        if names.len() != self.dim {
            return Err(LapisError::invalid(
                "Dataset::with_feature_names",
                "names.len()",
                names.len(),
                format!("need one name per feature ({} features)", self.dim),
            ));
        }
        self.feature_names = Some(names);
        Ok(self)
    }

    /// The same dataset under another name.
    pub fn with_name(mut self, name: impl Into<String>) -> Dataset {
        self.name = name.into();
        self
    }

    /// The same samples viewed with another per-sample shape of the same size (e.g.
    /// digits' `[64]` as `[1, 8, 8]`). Feature names are kept.
    pub fn reshape(mut self, shape: &[usize]) -> Result<Dataset> {
        let dim = shape_dim("Dataset::reshape", shape)?;
        if dim != self.dim {
            return Err(LapisError::invalid(
                "Dataset::reshape",
                "shape",
                shape,
                format!(
                    "has {dim} values per sample, the dataset has {} (shape {:?})",
                    self.dim, self.shape
                ),
            ));
        }
        self.shape = shape.to_vec();
        Ok(self)
    }

    /// The dataset's name (a CSV file's stem, `digits/train`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The shape of one sample.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of f32 values per sample (the product of [`shape`](Self::shape)).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.features.len() / self.dim
    }

    /// Whether the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// All samples, row-major: `len * dim` values.
    pub fn features(&self) -> &[f32] {
        &self.features
    }

    /// All samples, mutable (to standardise in place); the length cannot change.
    pub fn features_mut(&mut self) -> &mut [f32] {
        &mut self.features
    }

    /// Sample `i` (`dim` values), or `None` if `i >= len`.
    pub fn sample(&self, i: usize) -> Option<&[f32]> {
        let start = i.checked_mul(self.dim)?;
        self.features.get(start..start + self.dim)
    }

    /// The class labels, one per sample, if the dataset has them.
    pub fn labels(&self) -> Option<&[u32]> {
        self.labels.as_ref().map(|(l, _)| l.as_slice())
    }

    /// The number of classes, if the dataset has labels.
    pub fn classes(&self) -> Option<usize> {
        self.labels.as_ref().map(|&(_, c)| c)
    }

    /// How many samples each class has (`classes` counts), if the dataset has labels.
    pub fn class_counts(&self) -> Option<Vec<usize>> {
        let (labels, classes) = self.labels.as_ref()?;
        let mut counts = vec![0usize; *classes];
        for &l in labels {
            counts[l as usize] += 1;
        }
        Some(counts)
    }

    /// The regression targets, row-major (`len * target_dim`), if the dataset has them.
    pub fn targets(&self) -> Option<&[f32]> {
        self.targets.as_ref().map(|(t, _)| t.as_slice())
    }

    /// The number of regression targets per sample, if the dataset has them.
    pub fn target_dim(&self) -> Option<usize> {
        self.targets.as_ref().map(|&(_, d)| d)
    }

    /// The feature names, if known (one per feature value).
    pub fn feature_names(&self) -> Option<&[String]> {
        self.feature_names.as_deref()
    }

    /// Checks that every row index is below `len`.
    fn check_rows(&self, op: &'static str, rows: &[usize], allow_empty: bool) -> Result<()> {
        if !allow_empty && rows.is_empty() {
            return Err(LapisError::invalid(
                op,
                "rows",
                rows,
                "need at least one row (empty tensors are not supported)",
            ));
        }
        if let Some(&bad) = rows.iter().find(|&&r| r >= self.len()) {
            return Err(LapisError::invalid(
                op,
                "rows",
                bad,
                format!(
                    "row index out of range: dataset `{}` has {} samples",
                    self.name,
                    self.len()
                ),
            ));
        }
        Ok(())
    }

    /// The samples at `indices`, in that order (repeats allowed), with their labels,
    /// targets, name and feature names.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset> {
        self.check_rows("Dataset::subset", indices, true)?;
        Ok(Dataset {
            name: self.name.clone(),
            shape: self.shape.clone(),
            dim: self.dim,
            features: gather(&self.features, self.dim, indices),
            labels: self
                .labels
                .as_ref()
                .map(|(l, c)| (indices.iter().map(|&i| l[i]).collect(), *c)),
            targets: self
                .targets
                .as_ref()
                .map(|(t, d)| (gather(t, *d, indices), *d)),
            feature_names: self.feature_names.clone(),
        })
    }

    /// The first `n` samples and the rest (`n ≤ len`), both keeping the name.
    pub fn split_at(&self, n: usize) -> Result<(Dataset, Dataset)> {
        if n > self.len() {
            return Err(LapisError::invalid(
                "Dataset::split_at",
                "n",
                n,
                format!(
                    "cannot split off more than the {} samples of `{}`",
                    self.len(),
                    self.name
                ),
            ));
        }
        let first: Vec<usize> = (0..n).collect();
        let rest: Vec<usize> = (n..self.len()).collect();
        Ok((self.subset(&first)?, self.subset(&rest)?))
    }

    /// The samples at `rows` as an f32 tensor of shape `[rows.len(), ...shape]`.
    pub fn features_tensor(&self, device: &Device, rows: &[usize]) -> Result<Tensor> {
        self.check_rows("Dataset::features_tensor", rows, false)?;
        let mut shape = Vec::with_capacity(self.shape.len() + 1);
        shape.push(rows.len());
        shape.extend_from_slice(&self.shape);
        Tensor::from_slice(device, &shape, &gather(&self.features, self.dim, rows))
    }

    /// The labels of `rows` as a u32 tensor of shape `[rows.len()]`.
    pub fn labels_tensor(&self, device: &Device, rows: &[usize]) -> Result<Tensor> {
        let (labels, _) = self.require_labels("Dataset::labels_tensor")?;
        self.check_rows("Dataset::labels_tensor", rows, false)?;
        let batch: Vec<u32> = rows.iter().map(|&r| labels[r]).collect();
        Tensor::from_slice(device, &[rows.len()], &batch)
    }

    /// The labels of `rows` one-hot encoded as an f32 tensor of shape
    /// `[rows.len(), classes]`.
    pub fn one_hot(&self, device: &Device, rows: &[usize]) -> Result<Tensor> {
        let (labels, classes) = self.require_labels("Dataset::one_hot")?;
        self.check_rows("Dataset::one_hot", rows, false)?;
        let n = lapis_ops::tensor::check_shape("Dataset::one_hot", &[rows.len(), classes])?;
        let mut out = vec![0.0f32; n];
        for (b, &r) in rows.iter().enumerate() {
            out[b * classes + labels[r] as usize] = 1.0;
        }
        Tensor::from_slice(device, &[rows.len(), classes], &out)
    }

    /// The regression targets of `rows` as an f32 tensor of shape
    /// `[rows.len(), target_dim]`.
    pub fn targets_tensor(&self, device: &Device, rows: &[usize]) -> Result<Tensor> {
        let Some((targets, d)) = self.targets.as_ref() else {
            return Err(LapisError::invalid(
                "Dataset::targets_tensor",
                "dataset",
                &self.name,
                "the dataset has no regression targets",
            ));
        };
        self.check_rows("Dataset::targets_tensor", rows, false)?;
        Tensor::from_slice(device, &[rows.len(), *d], &gather(targets, *d, rows))
    }

    fn require_labels(&self, op: &'static str) -> Result<(&[u32], usize)> {
        match &self.labels {
            Some((l, c)) => Ok((l, *c)),
            None => Err(LapisError::invalid(
                op,
                "dataset",
                &self.name,
                "the dataset has no class labels (read it with a label column)",
            )),
        }
    }
}

/// Rows `rows` of the row-major `data` with `width` values per row. Rows must be in range.
fn gather(data: &[f32], width: usize, rows: &[usize]) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows.len() * width);
    for &r in rows {
        out.extend_from_slice(&data[r * width..(r + 1) * width]);
    }
    out
}
