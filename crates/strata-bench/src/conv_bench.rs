//! `conv` / `conv-all`: `Tensor::conv2d` forward (no graph) and
//! forward+backward (input, kernel and bias gradients of `y.sum()`) on the
//! distinct convolutions of ResNet-50 at batch 8 (`--conv-batch`), NHWC
//! input, HWIO kernel.
//! Forward+backward counts 3x the forward FLOPs (forward, dX, dW).
//! With `--precision` the rows are in that precision (float32 or
//! mixed_bfloat16), and dX and dW are also timed alone (the backward of a
//! forward run untimed).

use crate::record::{kernel_record, print_row, time_runs, Record};
use crate::Opts;
use strata_core::ops::{Conv2dConfig, Padding};
use strata_core::{no_grad, set_num_threads, Precision, Rng, Tensor};

/// The batch of the rows unless `--conv-batch` says otherwise.
pub const BATCH: usize = 8;

/// One ResNet-50 convolution: input side, channels, kernel, stride, padding,
/// and how many times torchvision's ResNet-50 uses it.
#[derive(Debug, Clone, Copy)]
pub struct ConvShape {
    pub label: &'static str,
    pub hw: usize,
    pub cin: usize,
    pub cout: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub count: usize,
    /// One of the three headline rows of `conv`.
    pub headline: bool,
}

// a table-row constructor: one argument per column
#[allow(clippy::too_many_arguments)]
const fn c(
    label: &'static str,
    hw: usize,
    cin: usize,
    cout: usize,
    k: usize,
    stride: usize,
    count: usize,
    headline: bool,
) -> ConvShape {
    ConvShape {
        label,
        hw,
        cin,
        cout,
        k,
        stride,
        pad: k / 2,
        count,
        headline,
    }
}

/// The 23 distinct convolutions of ResNet-50 (53 in all); bench/torch_bench.py
/// holds the same list.
pub const SHAPES: &[ConvShape] = &[
    c("conv1", 224, 3, 64, 7, 2, 1, true),
    c("layer1", 56, 64, 64, 1, 1, 1, false),
    c("layer1", 56, 64, 64, 3, 1, 3, true),
    c("layer1", 56, 64, 256, 1, 1, 4, true),
    c("layer1", 56, 256, 64, 1, 1, 2, false),
    c("layer2", 56, 256, 128, 1, 1, 1, false),
    c("layer2", 56, 128, 128, 3, 2, 1, false),
    c("layer2", 56, 256, 512, 1, 2, 1, false),
    c("layer2", 28, 128, 512, 1, 1, 4, false),
    c("layer2", 28, 512, 128, 1, 1, 3, false),
    c("layer2", 28, 128, 128, 3, 1, 3, false),
    c("layer3", 28, 512, 256, 1, 1, 1, false),
    c("layer3", 28, 256, 256, 3, 2, 1, false),
    c("layer3", 28, 512, 1024, 1, 2, 1, false),
    c("layer3", 14, 256, 1024, 1, 1, 6, false),
    c("layer3", 14, 1024, 256, 1, 1, 5, false),
    c("layer3", 14, 256, 256, 3, 1, 5, false),
    c("layer4", 14, 1024, 512, 1, 1, 1, false),
    c("layer4", 14, 512, 512, 3, 2, 1, false),
    c("layer4", 14, 1024, 2048, 1, 2, 1, false),
    c("layer4", 7, 512, 2048, 1, 1, 3, false),
    c("layer4", 7, 2048, 512, 1, 1, 2, false),
    c("layer4", 7, 512, 512, 3, 1, 2, false),
];

impl ConvShape {
    pub fn out_hw(&self) -> usize {
        (self.hw + 2 * self.pad - self.k) / self.stride + 1
    }
    pub fn forward_flops(&self, batch: usize) -> f64 {
        let o = self.out_hw();
        2.0 * (batch * o * o * self.cout * self.cin * self.k * self.k) as f64
    }
    pub fn key(&self, pass: &str) -> String {
        format!(
            "conv {} {}x{}x{}->{} k{}s{} {pass}",
            self.label, self.hw, self.hw, self.cin, self.cout, self.k, self.stride
        )
    }
    /// [`ConvShape::key`] with the batch, where it is not [`BATCH`].
    pub fn key_at(&self, pass: &str, batch: usize) -> String {
        match batch {
            BATCH => self.key(pass),
            b => self.key(&format!("{pass} b{b}")),
        }
    }
    /// [`ConvShape::key`] with the precision, where it is not float32.
    pub fn key_in(&self, pass: &str, batch: usize, precision: Precision) -> String {
        match precision {
            Precision::Float32 => self.key_at(pass, batch),
            p => format!("{} {p}", self.key_at(pass, batch)),
        }
    }
}

pub fn run(opts: &Opts, threads: &[usize], all: bool, out: &mut Vec<Record>) {
    let mut rng = Rng::new(2);
    for &t in threads {
        set_num_threads(t);
        // count-weighted totals over the whole network
        let (mut tot_fwd, mut tot_fb, mut tot_flops) = (0.0, 0.0, 0.0);
        for s in SHAPES.iter().filter(|s| all || s.headline) {
            let x = Tensor::rand_normal(&[opts.conv_batch, s.hw, s.hw, s.cin], 0.0, 1.0, &mut rng);
            let w = Tensor::rand_normal(&[s.k, s.k, s.cin, s.cout], 0.0, 0.05, &mut rng);
            let b = Tensor::rand_normal(&[s.cout], 0.0, 0.05, &mut rng);
            let cfg = Conv2dConfig {
                strides: (s.stride, s.stride),
                padding: Padding::symmetric(s.pad),
                dilation: (1, 1),
                groups: 1,
                precision: opts.precision.unwrap_or_default(),
            };
            let key = |pass: &str| s.key_in(pass, opts.conv_batch, cfg.precision);
            let f = s.forward_flops(opts.conv_batch);
            let fwd = time_runs(
                opts.warmup,
                opts.runs,
                || {},
                || {
                    let y = no_grad(|| x.conv2d(&w, Some(&b), cfg)).expect("conv2d forward");
                    std::hint::black_box(y);
                },
            );
            let r = kernel_record("conv", key("fwd"), t, opts.runs, fwd, f, opts.peak(t));
            print_row(&r);
            out.push(r);
            if opts.precision.is_some() {
                // each gradient alone: the forward in the untimed setup
                for (pass, wants_x) in [("dx", true), ("dw", false)] {
                    let xg = x.detach().requires_grad_(wants_x);
                    let wg = w.detach().requires_grad_(!wants_x);
                    let y = std::cell::RefCell::new(None);
                    let time = time_runs(
                        opts.warmup,
                        opts.runs,
                        || *y.borrow_mut() = Some(xg.conv2d(&wg, None, cfg).expect("conv2d")),
                        || {
                            let y = y.borrow_mut().take().expect("set up");
                            y.sum_all().backward().expect("conv2d backward");
                        },
                    );
                    let r = kernel_record("conv", key(pass), t, opts.runs, time, f, opts.peak(t));
                    print_row(&r);
                    out.push(r);
                }
            }

            let xg = x.detach().requires_grad_(true);
            let wg = w.detach().requires_grad_(true);
            let bg = b.detach().requires_grad_(true);
            let fb = time_runs(
                opts.warmup,
                opts.runs,
                || {
                    xg.zero_grad();
                    wg.zero_grad();
                    bg.zero_grad();
                },
                || {
                    let y = xg.conv2d(&wg, Some(&bg), cfg).expect("conv2d forward");
                    y.sum_all().backward().expect("conv2d backward");
                },
            );
            let r = kernel_record(
                "conv",
                key("fwd+bwd"),
                t,
                opts.runs,
                fb,
                3.0 * f,
                opts.peak(t),
            );
            print_row(&r);
            out.push(r);
            tot_fwd += s.count as f64 * fwd.0;
            tot_fb += s.count as f64 * fb.0;
            tot_flops += s.count as f64 * f;
        }
        if all {
            for (pass, time, mult) in [("fwd", tot_fwd, 1.0), ("fwd+bwd", tot_fb, 3.0)] {
                let mut r = kernel_record(
                    "conv",
                    format!("conv resnet50 all 53 convs (sum) {pass}"),
                    t,
                    opts.runs,
                    (time, time),
                    mult * tot_flops,
                    opts.peak(t),
                );
                r.note = "sum over the 53 convolutions of the per-shape medians".into();
                print_row(&r);
                out.push(r);
            }
        }
    }
    set_num_threads(0);
}
