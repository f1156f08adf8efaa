//! Property tests of every lapis op against its f64 reference, on the device
//! `Device::auto()` returns (lavapipe in CI). One test binary, one module per family.

mod covariance;
mod creation;
mod decay_scan;
mod dtype;
mod elementwise;
mod errors;
mod fft;
mod grouped;
mod index;
mod laplace;
mod layout;
mod lcm;
mod long_loops;
mod matmul;
mod optim;
mod reduce;
mod scale;
mod scan;
mod softmax;
mod softtopk;
mod sort;
