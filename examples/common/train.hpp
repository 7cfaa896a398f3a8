#pragma once
// The program around xgrad::nn's training loops (xgrad/nn/train.hpp) shared by the MNIST /
// Fashion-MNIST examples: command line, data split, progress bar, per-epoch metrics (CSV + gnuplot
// PNG), confusion matrix file, checkpoints and resume. Every example's main has the same shape:
//   Options o; (defaults) CLI::App app{title};
//   return run_example(app, o, argc, argv, [&] { model; Task task{...}; train_task(task, o); });
#include <CLI/CLI.hpp>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "xgrad/nn.hpp"

namespace xgrad::examples {

using F = float;

struct Options {
    std::string example;            ///< the program's name: default run directory runs/<example>
    std::string dataset = "mnist";  ///< mnist | fashion
    int epochs = 5;
    std::size_t batch = 64;
    double lr = 0.01;
    std::string optimizer = "sgd";  ///< sgd | momentum | adam | adamw
    std::string schedule = "none";  ///< none | step | cosine
    std::uint64_t seed = 1;
    int threads = 0;                ///< BLAS/OpenMP threads; 0 keeps the libraries' defaults
    std::string data_dir;           ///< default: $XGRAD_DATA or <repo>/data, then the dataset's folder
    std::string out_dir;            ///< default: runs/<example>[-fashion]
    bool resume = false;
    std::size_t train_limit = 0;    ///< use only the first N training images (quick runs, tests)
    std::size_t val_size = 10000;   ///< the last val_size training images are the validation set
    bool quiet = false;
    /// Stop after the first epoch whose test accuracy (%) reaches this; 0: off. The schedule still
    /// spans `epochs`, so the epochs run are those of the full run (time to accuracy).
    double stop_at_accuracy = 0;
    /// The program trains through train(): add_options offers --distributed.
    bool data_parallel = false;
    /// --distributed: data-parallel training on MPI, one process per rank (xgrad::distributed).
    bool distributed = false;
};

/// The run directory: --out, or runs/<example>[-fashion].
std::string run_dir(const Options& o);

/// A CLI11 check: a finite real in (lo, hi] (the ends included or not by include_lo, include_hi);
/// rejects nan, inf, trailing junk and anything outside, naming the value and the range.
CLI::Validator real_in(double lo, double hi, bool include_lo = false, bool include_hi = true);
/// A CLI11 check: an integer in [lo, hi], checked on the text before conversion (so "-1" never
/// wraps to 2^64 − 1).
CLI::Validator int_in(long long lo, long long hi);

/// Adds the shared options (defaults taken from `o`) to a CLI11 app; --distributed too when
/// o.data_parallel (rejected, before any data is loaded, when xgrad was built without MPI).
void add_options(CLI::App& app, Options& o);
/// --stop-at-accuracy, for the programs whose training goes through train().
void add_stop_option(CLI::App& app, Options& o);

struct Data {
    nn::Dataset train, val, test;
};
/// Loads the dataset named in the options and splits train/validation (the last val_size images).
Data load_data(const Options& o);

/// What an example supplies: the model, its forward pass on a batch, its loss, and optional extra
/// per-epoch metrics computed from the validation outputs.
struct Task {
    std::string name;
    nn::Module<F>* model = nullptr;
    std::function<Var<F>(Tape<F>&, const Tensor<F>&)> forward;
    std::function<Var<F>(const Var<F>& output, const IndexTensor& labels)> loss;
    std::function<std::vector<std::pair<std::string, double>>(const Tensor<F>& outputs, const IndexTensor& labels)>
        extra_metrics;
};

struct EpochMetrics {
    int epoch = 0;
    double lr = 0, train_loss = 0, train_acc = 0, val_loss = 0, val_acc = 0, test_acc = 0, seconds = 0;
    std::vector<std::pair<std::string, double>> extra;
};

struct RunResult {
    std::vector<EpochMetrics> history;
    double test_accuracy = 0;
    double seconds = 0;  ///< training time of this process (excludes resumed epochs)
    std::string out_dir;
};

/// The model's forward on x: model(x), or, while train() runs --distributed on this model, through
/// its DistributedDataParallel wrapper (which averages the gradients across ranks during backward).
/// A Task's forward calls its model through this.
Var<F> call_model(nn::Module<F>& model, const Var<F>& x);

/// This process's rank in a --distributed run (0 otherwise).
int process_rank();
/// False on the ranks other than 0 of a --distributed run: they print nothing and write no file.
bool lead_rank();

/// --distributed for a program with its own training loop (char_lm; train() uses it too): while
/// it lives, `model` is behind DistributedDataParallel (rank 0's parameters and buffers on every
/// rank, gradients averaged during backward). Not distributed: forward only runs, synchronize and
/// sum do nothing. Construction and every call but rank()/world_size() are collective.
class Replicas {
public:
    Replicas(nn::Module<F>& model, bool distributed);
    ~Replicas();
    Replicas(const Replicas&) = delete;
    Replicas& operator=(const Replicas&) = delete;
    bool distributed() const { return bool(impl_); }
    int rank() const;
    int world_size() const;
    /// run() records the model's forward on `tape` (from whatever inputs it takes); distributed,
    /// through the wrapper, which checks that every rank's input_shape is rank 0's and arms the
    /// averaging of the next backward's gradients.
    Var<F> forward(Tape<F>& tape, const Shape& input_shape, const std::function<Var<F>()>& run);
    /// After backward, before clipping or the optimizer step: waits for the averaged gradients.
    void synchronize();
    /// Sums `values` over the ranks, in place.
    void sum(std::vector<double>& values);
    /// This rank's share of an epoch's order, as DistributedSampler takes it: positions rank,
    /// rank + R, rank + 2R, … of `order` padded with its first entries to a multiple of R; all of
    /// `order` when not distributed. R ranks at batch b then see, step by step, one process's
    /// batches of R·b.
    std::vector<std::size_t> shard(const std::vector<std::size_t>& order) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Builds the optimizer named in the options over the model's parameters.
std::unique_ptr<nn::Optimizer<F>> make_optimizer(const Options& o, nn::Module<F>& model);

/// Trains for o.epochs (continuing from <out>/checkpoint.safetensors with --resume), writing
/// <out>/metrics.csv, <out>/curves.png, <out>/confusion.csv, <out>/model.safetensors.
/// With o.distributed (inside run_example's MPI environment): the model is wrapped in
/// DistributedDataParallel (rank 0's weights everywhere, gradients averaged across ranks), each rank
/// trains on its DistributedSampler shard of every epoch in batches of o.batch (per rank), the
/// reported training loss and accuracy are over all ranks' samples, every rank evaluates (the
/// replicas are equal) and resumes from the same checkpoint, and rank 0 alone prints and writes.
RunResult train(Task& task, nn::Optimizer<F>& opt, const Data& data, const Options& o);

/// The finished-epoch count stored in a checkpoint's metadata, checked (present, an integer in
/// [0, epochs]); the error names the checkpoint and the field.
int checkpoint_epoch(const std::map<std::string, std::string>& meta, const std::string& path, int epochs);

/// Progress line on stderr, redrawn in place every 10 steps; silent when stderr is not a terminal.
/// `unit` names what `samples` counts ("samples", "chars").
class Progress {
public:
    Progress(bool enabled, std::size_t total, std::string unit = "samples");
    void update(std::size_t step, std::size_t samples, double loss, int epoch, int epochs);
    /// Erases the line.
    void done();

private:
    bool on_;
    std::size_t total_;
    std::string unit_;
    std::chrono::steady_clock::time_point start_;
};

/// Draws <out_dir>/curves.png with gnuplot from `commands` (after the terminal, output, CSV
/// separator, column-head keys, grid and "epoch" x label are set), through <out_dir>/curves.gnuplot;
/// a note on stderr, once, when gnuplot is missing or fails.
void plot_curves(const std::string& out_dir, const std::string& commands);

/// Runs an example's body: returns 0, or prints the error (missing data, bad file, ...) and returns 1.
int guarded(const std::function<void()>& body);

/// Parses argv with the shared options plus whatever the example added; returns false (with the
/// exit code in `code`) when the program should stop (--help or a usage error).
bool parse(CLI::App& app, int argc, char** argv, int& code);

/// An example's main: adds the shared options to `app`, then the example's own (`extra_options`),
/// parses argv and runs `body`; returns the exit code (CLI11's for --help or a usage error, 1 after
/// printing an error `body` threw). With --distributed, `body` runs inside MPI
/// (xgrad::distributed::Environment and run_or_abort: an error on one rank ends every rank).
int run_example(CLI::App& app, Options& o, int argc, char** argv, const std::function<void()>& body,
                const std::function<void(CLI::App&)>& extra_options = {});

/// A classifier under softmax cross-entropy: forward = model(x), or model(x as (B, 1, 28, 28)) with
/// `images`, the shape a CNN takes.
Task classifier_task(const std::string& name, nn::Module<F>& model, bool images = false);

/// The usual run: loads the data named in the options, builds their optimizer and trains the task.
RunResult train_task(Task& task, const Options& o);

}  // namespace xgrad::examples
