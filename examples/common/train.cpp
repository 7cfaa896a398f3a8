#include "train.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <limits>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#ifdef XGRAD_EXAMPLES_DISTRIBUTED
#include "xgrad/distributed.hpp"
#endif

namespace xgrad::examples {

namespace fs = std::filesystem;
using clock_type = std::chrono::steady_clock;

namespace {

/// "(0, 1000]"-style bounds with short numbers (CLI11's Range prints DBL_MAX in full).
std::string bound_str(double v) { return fmt::format("{:g}", v); }

}  // namespace

CLI::Validator real_in(double lo, double hi, bool include_lo, bool include_hi)
{
    const std::string range = (include_lo ? "[" : "(") + bound_str(lo) + ", " + bound_str(hi) + (include_hi ? "]" : ")");
    return CLI::Validator(
        [lo, hi, range, include_lo, include_hi](std::string& s) -> std::string {
            double v = 0;
            std::size_t used = 0;
            try {
                v = std::stod(s, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used != s.size() || s.empty()) return "'" + s + "' is not a number; allowed: a finite number in " + range;
            if (!std::isfinite(v) || v < lo || (v == lo && !include_lo) || v > hi || (v == hi && !include_hi))
                return s + " is outside the allowed range " + range;
            return {};
        },
        "REAL in " + range);
}

CLI::Validator int_in(long long lo, long long hi)
{
    const std::string range = "[" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
    return CLI::Validator(
        [lo, hi, range](std::string& s) -> std::string {
            long long v = 0;
            std::size_t used = 0;
            try {
                v = std::stoll(s, &used, 10);
            } catch (const std::out_of_range&) {
                return s + " is outside the allowed range " + range;
            } catch (const std::exception&) {
                used = 0;
            }
            if (used != s.size() || s.empty()) return "'" + s + "' is not an integer; allowed: " + range;
            if (v < lo || v > hi) return s + " is outside the allowed range " + range;
            return {};
        },
        "INT in " + range);
}

namespace {

/// The run directory exists (created if needed) and a file can be written in it: checked before
/// any data is loaded or any epoch is trained, so a bad --out fails in a second, not after an epoch.
void check_run_dir(const std::string& dir)
{
    std::error_code ec;
    fs::create_directories(dir, ec);
    if (ec) throw CLI::ValidationError("--out", "cannot create the run directory '" + dir + "': " + ec.message());
    if (!fs::is_directory(dir, ec)) throw CLI::ValidationError("--out", "'" + dir + "' is not a directory");
    std::string probe = dir + "/.write-probe.XXXXXX";
    const int fd = ::mkstemp(probe.data());
    if (fd < 0 || ::write(fd, "x", 1) != 1) {
        const std::string why = std::strerror(errno);
        if (fd >= 0) {
            ::close(fd);
            ::unlink(probe.c_str());
        }
        throw CLI::ValidationError("--out", "cannot write in the run directory '" + dir + "': " + why);
    }
    ::close(fd);
    ::unlink(probe.c_str());
}

}  // namespace

std::string run_dir(const Options& o)
{
    if (!o.out_dir.empty()) return o.out_dir;
    return "runs/" + o.example + (o.dataset == "fashion" ? "-fashion" : "");
}

void add_options(CLI::App& app, Options& o)
{
    if (o.data_parallel)
        app.add_flag("--distributed", o.distributed,
                     "data-parallel training on MPI: run under mpiexec (or scripts/mpirun-local -n N); gradients "
                     "averaged across the ranks, --batch-size is per rank (global batch: batch-size x ranks), "
                     "rank 0 alone prints and writes");
    app.add_option("--dataset", o.dataset, "mnist or fashion")->check(CLI::IsMember({"mnist", "fashion"}))->capture_default_str();
    app.add_option("-e,--epochs", o.epochs, "number of epochs")->check(int_in(1, 100000))->capture_default_str();
    app.add_option("-b,--batch-size", o.batch, o.data_parallel ? "mini-batch size (per rank with --distributed)" : "mini-batch size")->check(int_in(1, 1 << 20))->capture_default_str();
    app.add_option("--lr", o.lr, "learning rate")->check(real_in(0, 1000))->capture_default_str();
    app.add_option("--optimizer", o.optimizer, "sgd, momentum (0.9), adam or adamw")
        ->check(CLI::IsMember({"sgd", "momentum", "adam", "adamw"}))
        ->capture_default_str();
    app.add_option("--schedule", o.schedule, "learning-rate schedule: none, step (×0.1 every third of the epochs) or cosine")
        ->check(CLI::IsMember({"none", "step", "cosine"}))
        ->capture_default_str();
    app.add_option("--seed", o.seed, "seed for initialization and data order")
        ->check(int_in(0, std::numeric_limits<long long>::max()))
        ->capture_default_str();
    app.add_option("--threads", o.threads, "threads for BLAS, oneDNN and the conv/pool kernels (default: the libraries' own)")
        ->check(int_in(1, xgrad::max_num_threads()));
    app.add_option("--data-dir", o.data_dir, "directory with the IDX files (default: $XGRAD_DATA or ./data, then mnist/ or fashion-mnist/)");
    app.add_option("-o,--out", o.out_dir, "output directory for metrics, plots and checkpoints (default: runs/<example>)");
    app.add_flag("--resume", o.resume, "continue from <out>/checkpoint.safetensors");
    app.add_option("--train-limit", o.train_limit, "use only the first N training images (quick runs; 0: all)")
        ->check(int_in(0, 1 << 30));
    app.add_option("--val-size", o.val_size, "validation images taken from the end of the training set")
        ->check(int_in(1, 1 << 30))
        ->capture_default_str();
    app.add_flag("-q,--quiet", o.quiet, "no progress bar");
    // Runs after every option is parsed and validated, before the example loads any data.
    app.callback([&o] {
#ifndef XGRAD_EXAMPLES_DISTRIBUTED
        if (o.distributed)
            throw CLI::ValidationError("--distributed", "this xgrad was built without MPI (xgrad::distributed): install "
                                                        "Open MPI (scripts/setup) and reconfigure with -DXGRAD_WITH_MPI=ON");
#endif
        check_run_dir(run_dir(o));
    });
}

void add_stop_option(CLI::App& app, Options& o)
{
    app.add_option("--stop-at-accuracy", o.stop_at_accuracy,
                   "stop after the first epoch whose test accuracy reaches this percentage (the learning-rate "
                   "schedule still spans --epochs; 0: train all epochs)")
        ->check(real_in(0, 100, true, true));
}

bool parse(CLI::App& app, int argc, char** argv, int& code)
{
    try {
        app.parse(argc, argv);
    } catch (const CLI::ParseError& e) {
        code = app.exit(e);
        return false;
    }
    return true;
}

int guarded(const std::function<void()>& body)
{
    try {
        body();
        return 0;
    } catch (const std::exception& e) {
        fmt::print(stderr, "error: {}\n", e.what());
        return 1;
    }
}

int run_example(CLI::App& app, Options& o, int argc, char** argv, const std::function<void()>& body,
                const std::function<void(CLI::App&)>& extra_options)
{
    add_options(app, o);
    if (extra_options) extra_options(app);
    int code = 0;
    if (!parse(app, argc, argv, code)) return code;
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (o.distributed) {
        xgrad::distributed::Environment env(argc, argv);
        return xgrad::distributed::run_or_abort([&] {
            body();
            return 0;
        });
    }
#endif
    return guarded(body);
}

namespace {

/// While train() runs --distributed: the model it wraps and its wrapper's forward.
struct ModelThrough {
    nn::Module<F>* model = nullptr;
    std::function<Var<F>(const Var<F>&)> forward;
    std::size_t calls = 0;  // forwards through the wrapper: a task that bypasses call_model is an error
};
ModelThrough through;

}  // namespace

Var<F> call_model(nn::Module<F>& model, const Var<F>& x)
{
    if (through.model == &model && through.forward) {
        ++through.calls;
        return through.forward(x);
    }
    return model(x);
}

int process_rank()
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    return xgrad::distributed::rank();  // 0 without MPI
#else
    return 0;
#endif
}

bool lead_rank() { return process_rank() == 0; }

#ifdef XGRAD_EXAMPLES_DISTRIBUTED
struct Replicas::Impl {
    explicit Impl(nn::Module<F>& model) : ddp(model) {}
    xgrad::distributed::DistributedDataParallel<F> ddp;
};
#else
struct Replicas::Impl {};
#endif

Replicas::Replicas(nn::Module<F>& model, bool distributed)
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (distributed) impl_ = std::make_unique<Impl>(model);
#else
    (void)model;
    if (distributed) throw std::logic_error("Replicas: this xgrad was built without MPI (xgrad::distributed)");
#endif
}

Replicas::~Replicas() = default;

int Replicas::rank() const
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (impl_) return impl_->ddp.rank();
#endif
    return 0;
}

int Replicas::world_size() const
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (impl_) return impl_->ddp.world_size();
#endif
    return 1;
}

Var<F> Replicas::forward(Tape<F>& tape, const Shape& input_shape, const std::function<Var<F>()>& run)
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (impl_) return impl_->ddp.forward_with(tape, input_shape, run);
#endif
    (void)tape, (void)input_shape;
    return run();
}

void Replicas::synchronize()
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (impl_) impl_->ddp.finish_gradient_synchronization();
#endif
}

std::vector<std::size_t> Replicas::shard(const std::vector<std::size_t>& order) const
{
    const std::size_t r = std::size_t(world_size()), n = order.size();
    if (r == 1 || n == 0) return order;
    std::vector<std::size_t> mine;
    for (std::size_t i = std::size_t(rank()); i < (n + r - 1) / r * r; i += r) mine.push_back(order[i % n]);
    return mine;
}

void Replicas::sum(std::vector<double>& values)
{
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    if (impl_)
        xgrad::distributed::check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(), int(values.size()), MPI_DOUBLE, MPI_SUM,
                                                    MPI_COMM_WORLD),
                                      "MPI_Allreduce");
#else
    (void)values;
#endif
}

Task classifier_task(const std::string& name, nn::Module<F>& model, bool images)
{
    auto forward = [&model, images](Tape<F>& t, const Tensor<F>& x) {
        return call_model(model, images ? reshape(t.borrow(x), {-1, 1, 28, 28}) : t.borrow(x));
    };
    return {name, &model, forward, [](const Var<F>& out, const IndexTensor& y) { return cross_entropy(out, y); }, nullptr};
}

RunResult train_task(Task& task, const Options& o)
{
    auto opt = make_optimizer(o, *task.model);
    return train(task, *opt, load_data(o), o);
}

Data load_data(const Options& o)
{
    std::string dir = o.data_dir;
    const std::string sub = o.dataset == "fashion" ? "fashion-mnist" : "mnist";
    if (dir.empty()) {
        const char* env = std::getenv("XGRAD_DATA");
        dir = (env ? std::string(env) : std::string("data")) + "/" + sub;
    }
    const std::string hint = "run `scripts/fetch-data " + std::string(o.dataset == "fashion" ? "fashion" : "mnist") +
                             "` to fetch and verify it";
    Data d;
    nn::Dataset full = nn::load_idx_dataset(dir, "train", hint);
    d.test = nn::load_idx_dataset(dir, "t10k", hint);
    const std::size_t n = full.size();
    if (o.val_size >= n) throw std::invalid_argument("--val-size must be smaller than the " + std::to_string(n) + " training images");
    d.val = full.slice(n - o.val_size, n);
    std::size_t train_n = n - o.val_size;
    if (o.train_limit) train_n = std::min(train_n, o.train_limit);
    d.train = full.slice(0, train_n);
    return d;
}

std::unique_ptr<nn::Optimizer<F>> make_optimizer(const Options& o, nn::Module<F>& model)
{
    if (o.optimizer == "adam") return std::make_unique<nn::Adam<F>>(model.parameters(), nn::AdamOptions(o.lr));
    if (o.optimizer == "adamw")  // decoupled decay 0.01 on weights; none on biases and norms' scales
        return std::make_unique<nn::AdamW<F>>(nn::decay_param_groups(model.named_parameters()),
                                              nn::AdamWOptions(o.lr).weight_decay(0.01));
    if (o.optimizer == "momentum") return std::make_unique<nn::SGD<F>>(model.parameters(), nn::SGDOptions(o.lr).momentum(0.9));
    return std::make_unique<nn::SGD<F>>(model.parameters(), nn::SGDOptions(o.lr));
}

namespace {

double lr_for_epoch(const Options& o, int epoch)
{
    if (o.schedule == "step") return nn::StepLR(o.lr, std::max(1, o.epochs / 3)).lr(epoch);
    if (o.schedule == "cosine") return nn::CosineLR(o.lr, o.epochs).lr(epoch);
    return o.lr;
}

}  // namespace

Progress::Progress(bool enabled, std::size_t total, std::string unit)
    : on_(enabled && ::isatty(2)), total_(total), unit_(std::move(unit)), start_(std::chrono::steady_clock::now())
{
}

void Progress::update(std::size_t step, std::size_t samples, double loss, int epoch, int epochs)
{
    if (!on_ || (step % 10 != 0 && step != total_)) return;
    const double el = std::chrono::duration<double>(clock_type::now() - start_).count();
    const double rate = samples / std::max(el, 1e-9);
    const double eta = step ? el * double(total_ - step) / double(step) : 0;
    const int width = 30, fill = int(width * double(step) / double(total_));
    fmt::print(stderr, "\r  epoch {}/{} [{}{}] {}/{} loss {:.4f} {:.0f} {}/s ETA {:.0f}s   ", epoch, epochs,
               std::string(std::size_t(fill), '#'), std::string(std::size_t(width - fill), '.'), step, total_, loss,
               rate, unit_, eta);
    std::fflush(stderr);
}

void Progress::done()
{
    if (on_) fmt::print(stderr, "\r{}\r", std::string(110, ' '));
}

namespace {

/// The task's model over a dataset, batches of 1000, no backward closures recorded.
nn::Evaluation<F> evaluate(Task& task, Tape<F>& tape, const nn::Dataset& d, bool keep_outputs)
{
    return nn::evaluate(*task.model, tape, d, task.forward, task.loss, 1000, keep_outputs);
}

void write_metrics(const std::string& path, const std::vector<EpochMetrics>& h)
{
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        f << "epoch,lr,train_loss,train_acc,val_loss,val_acc,test_acc,seconds";
        if (!h.empty())
            for (const auto& [k, v] : h.front().extra) f << "," << k;
        f << "\n";
        for (const auto& m : h) {
            f << fmt::format("{},{:.6g},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.3f}", m.epoch, m.lr, m.train_loss, m.train_acc,
                             m.val_loss, m.val_acc, m.test_acc, m.seconds);
            for (const auto& [k, v] : m.extra) f << fmt::format(",{:.6g}", v);
            f << "\n";
        }
    }
    fs::rename(tmp, path);
}

/// The metrics of epochs 1..up_to_epoch from a previous run's CSV; a missing file gives none (the
/// checkpoint is what resuming needs), a malformed one an error naming the file, line and field.
std::vector<EpochMetrics> read_metrics(const std::string& path, int up_to_epoch)
{
    std::vector<EpochMetrics> h;
    std::ifstream f(path);
    if (!f) return h;
    std::string line;
    std::vector<std::string> cols;
    if (std::getline(f, line)) {
        std::stringstream ss(line);
        for (std::string c; std::getline(ss, c, ',');) cols.push_back(c);
    }
    for (std::size_t line_no = 2; std::getline(f, line); ++line_no) {
        std::stringstream ss(line);
        std::vector<double> v;
        for (std::string c; std::getline(ss, c, ',');) {
            std::size_t used = 0;
            double x = 0;
            try {
                x = std::stod(c, &used);
            } catch (const std::exception&) {
                used = 0;
            }
            if (used == 0 || used != c.size())
                throw std::runtime_error(fmt::format("--resume: {} line {}: field {} ('{}') is not a number", path, line_no,
                                                     v.size() + 1, c));
            v.push_back(x);
        }
        if (v.size() < 8)
            throw std::runtime_error(fmt::format("--resume: {} line {}: {} fields, expected at least 8", path, line_no, v.size()));
        if (v[0] > up_to_epoch) continue;
        EpochMetrics m{int(v[0]), v[1], v[2], v[3], v[4], v[5], v[6], v[7], {}};
        for (std::size_t i = 8; i < v.size() && i < cols.size(); ++i) m.extra.emplace_back(cols[i], v[i]);
        h.push_back(m);
    }
    return h;
}

}  // namespace

int checkpoint_epoch(const std::map<std::string, std::string>& meta, const std::string& path, int epochs)
{
    const auto it = meta.find("epoch");
    if (it == meta.end()) throw std::runtime_error("--resume: " + path + ": metadata field 'epoch' is missing");
    const std::string& s = it->second;
    long long e = -1;
    std::size_t used = 0;
    try {
        e = std::stoll(s, &used, 10);
    } catch (const std::exception&) {
        used = 0;
    }
    if (used == 0 || used != s.size() || e < 0 || e > 100000)
        throw std::runtime_error("--resume: " + path + ": metadata field 'epoch' is '" + s +
                                 "', expected a whole number of finished epochs in [0, 100000]");
    if (e > epochs)
        throw std::runtime_error(fmt::format("--resume: {} is after epoch {}, beyond --epochs {}: nothing to train", path, e,
                                             epochs));
    return int(e);
}

namespace {

void plot(const std::string& out_dir, const std::string& title)
{
    plot_curves(out_dir,
                "set multiplot layout 1,2 title '" + title + "'\n" +
                    "set title 'loss'\nplot '" + out_dir + "/metrics.csv' using 1:3 with linespoints title 'train', '' using 1:5 with linespoints title 'validation'\n" +
                    "set title 'accuracy (%)'\nset key bottom right\nplot '" + out_dir +
                    "/metrics.csv' using 1:($4*100) with linespoints title 'train', '' using 1:($6*100) with linespoints title 'validation', '' using 1:($7*100) with linespoints title 'test'\n" +
                    "unset multiplot\n");
}

}  // namespace

void plot_curves(const std::string& out_dir, const std::string& commands)
{
    static bool warned = false;
    if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) {
        if (!warned) fmt::print(stderr, "note: gnuplot not found, no plot (scripts/setup --examples installs it)\n");
        warned = true;
        return;
    }
    const std::string script = out_dir + "/curves.gnuplot";
    {
        std::ofstream g(script);
        g << "set terminal pngcairo noenhanced size 1100,420 font ',10'\n"
          << "set output '" << out_dir << "/curves.png'\n"
          << "set datafile separator ','\nset key autotitle columnhead\nset grid\nset xlabel 'epoch'\n" << commands;
    }
    if (std::system(("gnuplot '" + script + "' 2> '" + out_dir + "/gnuplot.log'").c_str()) != 0 && !warned) {
        fmt::print(stderr, "note: gnuplot failed, see {}/gnuplot.log\n", out_dir);
        warned = true;
    }
}

namespace {

void confusion(Task& task, Tape<F>& tape, const nn::Dataset& test, const std::string& out_dir)
{
    const nn::Evaluation<F> e = evaluate(task, tape, test, true);
    const auto m = nn::confusion_matrix(e.outputs, test.labels);
    const std::size_t c = m.shape()[0];
    std::ofstream f(out_dir + "/confusion.csv");
    f << "true\\predicted";
    for (std::size_t j = 0; j < c; ++j) f << "," << j;
    f << "\n";
    fmt::print("confusion matrix on the test set (rows: true class, columns: predicted)\n     ");
    for (std::size_t j = 0; j < c; ++j) fmt::print("{:>6}", j);
    fmt::print("\n");
    for (std::size_t i = 0; i < c; ++i) {
        f << i;
        fmt::print("{:>5}", i);
        for (std::size_t j = 0; j < c; ++j) {
            f << "," << m(i, j);
            fmt::print("{:>6}", m(i, j));
        }
        f << "\n";
        fmt::print("\n");
    }
}

#ifdef XGRAD_EXAMPLES_DISTRIBUTED
/// --distributed: the task's model behind DistributedDataParallel (call_model goes through it while
/// this lives) and this rank's DistributedSampler shard of each epoch.
class DataParallel {
public:
    /// Collective: every rank's model gets rank 0's parameters and buffers.
    DataParallel(Task& task, std::size_t n, const Options& o)
        : task_(task), replicas_(*task.model, true), sampler_(n, replicas_.world_size(), replicas_.rank(), true, o.seed)
    {
        through = {task.model, [this](const Var<F>& x) {
                       return replicas_.forward(x.tape(), x.shape(), [&] { return task_.model->forward(x); });
                   }, 0};
    }
    ~DataParallel() { through = {}; }
    DataParallel(const DataParallel&) = delete;
    DataParallel& operator=(const DataParallel&) = delete;

    int world_size() const { return replicas_.world_size(); }
    std::size_t samples_per_rank() const { return sampler_.num_samples(); }

    /// nn::train_epoch on this rank's shard, the gradients averaged across ranks before every
    /// optimizer step; the loss and accuracy returned are over every rank's samples.
    nn::EpochStats epoch(Tape<F>& tape, nn::Optimizer<F>& opt, const nn::Dataset& data, const Options& o,
                         std::size_t epoch, const nn::StepCallback& on_step)
    {
        sampler_.set_epoch(epoch);
        const std::vector<std::size_t> mine = sampler_.indices();
        const std::size_t n = mine.size(), steps = (n + o.batch - 1) / o.batch;
        Tensor<F> x;
        IndexTensor y;
        double loss_sum = 0;
        std::size_t correct = 0;
        for (std::size_t s = 0; s < steps; ++s) {
            const std::size_t b = s * o.batch, end = std::min(n, b + o.batch);
            nn::gather_batch(data, mine, b, end, x, y);
            opt.zero_grad();
            const std::size_t calls = through.calls;
            auto out = task_.forward(tape, x);
            if (through.calls == calls)
                throw std::logic_error(task_.name + ": the task's forward does not call its model through call_model(), "
                                                    "so --distributed cannot average its gradients");
            auto l = task_.loss(out, y);
            tape.backward(l);
            replicas_.synchronize();
            opt.step();
            const double v = double(l.item());
            if (!std::isfinite(v))
                throw std::runtime_error(fmt::format("epoch {} step {}: loss is {} (learning rate {} too high?)", epoch + 1,
                                                     s + 1, v, opt.lr()));
            loss_sum += v * double(end - b);
            correct += nn::count_correct(out.value(), y);
            tape.clear();
            if (on_step) on_step(s + 1, steps, end, loss_sum / double(end));
        }
        std::vector<double> sums{loss_sum, double(correct), double(n)};
        replicas_.sum(sums);
        return {sums[2] > 0 ? sums[0] / sums[2] : 0.0, sums[2] > 0 ? sums[1] / sums[2] : 0.0};
    }

private:
    Task& task_;
    Replicas replicas_;
    xgrad::distributed::DistributedSampler sampler_;
};
#endif

}  // namespace

RunResult train(Task& task, nn::Optimizer<F>& opt, const Data& data, const Options& o)
{
    if (o.threads > 0) xgrad::set_num_threads(o.threads);
    const bool lead = lead_rank();
    RunResult r;
    r.out_dir = o.out_dir.empty() ? "runs/" + task.name + (o.dataset == "fashion" ? "-fashion" : "") : o.out_dir;
    fs::create_directories(r.out_dir);
    const std::string ckpt = r.out_dir + "/checkpoint.safetensors", csv = r.out_dir + "/metrics.csv";
    int start = 0;
    if (o.resume) {
        // Everything is read and checked before anything in the run directory is written.
        if (!fs::is_regular_file(ckpt)) throw std::runtime_error("--resume: no checkpoint at '" + ckpt + "'");
        const auto meta = nn::load_checkpoint(ckpt, *task.model, opt, {"epoch"});  // checked before any change
        start = checkpoint_epoch(meta, ckpt, o.epochs);
        r.history = read_metrics(csv, start);
        if (lead) fmt::print("resumed from {} after epoch {}\n", ckpt, start);
    }
    std::size_t steps = (data.train.size() + o.batch - 1) / o.batch;
    std::string batch = std::to_string(o.batch);
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
    // After the checkpoint is loaded (on every rank, from the same file); rank 0's state wins anyway.
    std::unique_ptr<DataParallel> parallel;
    if (o.distributed) {
        parallel = std::make_unique<DataParallel>(task, data.train.size(), o);
        steps = (parallel->samples_per_rank() + o.batch - 1) / o.batch;
        batch = fmt::format("{} per rank x {} ranks", o.batch, parallel->world_size());
    }
#endif
    if (lead)
        fmt::print("{} on {}: {} train / {} validation / {} test images, {} parameters, batch {}, {} lr {}\n", task.name,
                   o.dataset, data.train.size(), data.val.size(), data.test.size(), task.model->num_parameters(), batch,
                   o.optimizer, o.lr);
    Tape<F> tape;
    const auto t0 = clock_type::now();
    for (int epoch = start; epoch < o.epochs; ++epoch) {
        const auto e0 = clock_type::now();
        opt.set_lr(lr_for_epoch(o, epoch));
        Progress bar(!o.quiet && lead, steps);
        const nn::StepCallback on_step = [&](std::size_t step, std::size_t, std::size_t samples, double mean_loss) {
            bar.update(step, samples, mean_loss, epoch + 1, o.epochs);
        };
#ifdef XGRAD_EXAMPLES_DISTRIBUTED
        const nn::EpochStats st =
            parallel ? parallel->epoch(tape, opt, data.train, o, std::size_t(epoch), on_step)
                     : nn::train_epoch(tape, opt, data.train, task.forward, task.loss,
                                       nn::EpochOptions().batch_size(o.batch).seed(o.seed).epoch(std::size_t(epoch)), on_step);
#else
        const nn::EpochStats st = nn::train_epoch(
            tape, opt, data.train, task.forward, task.loss, nn::EpochOptions().batch_size(o.batch).seed(o.seed).epoch(std::size_t(epoch)),
            on_step);
#endif
        bar.done();
        EpochMetrics m;
        m.epoch = epoch + 1;
        m.lr = opt.lr();
        m.train_loss = st.loss;
        m.train_acc = st.accuracy;
        const nn::Evaluation<F> val = evaluate(task, tape, data.val, bool(task.extra_metrics));
        m.val_loss = val.loss;
        m.val_acc = val.accuracy;
        m.test_acc = evaluate(task, tape, data.test, false).accuracy;
        if (task.extra_metrics) m.extra = task.extra_metrics(val.outputs, data.val.labels);
        m.seconds = std::chrono::duration<double>(clock_type::now() - e0).count();
        r.history.push_back(m);
        // Every rank evaluates the same replica, so all stop after the same epoch.
        const bool reached = o.stop_at_accuracy > 0 && 100 * m.test_acc >= o.stop_at_accuracy - 1e-9;
        if (!lead) {  // the other ranks train and evaluate as rank 0 does, silently
            if (reached) break;
            continue;
        }
        std::string extra;
        for (const auto& [k, v] : m.extra) extra += fmt::format("  {} {:.4g}", k, v);
        fmt::print("epoch {:>2}/{}  train loss {:.4f} acc {:.2f}%  val loss {:.4f} acc {:.2f}%  test acc {:.2f}%  {:.1f}s{}\n",
                   m.epoch, o.epochs, m.train_loss, 100 * m.train_acc, m.val_loss, 100 * m.val_acc, 100 * m.test_acc,
                   m.seconds, extra);
        std::fflush(stdout);
        write_metrics(csv, r.history);
        nn::save_checkpoint(ckpt, *task.model, opt, {{"epoch", std::to_string(epoch + 1)}, {"example", task.name}});
        plot(r.out_dir, task.name + " on " + o.dataset);
        if (reached) {
            fmt::print("stopping after epoch {}: its test accuracy {:.2f}% reaches {:g}% (--stop-at-accuracy)\n", m.epoch,
                       100 * m.test_acc, o.stop_at_accuracy);
            break;
        }
    }
    r.seconds = std::chrono::duration<double>(clock_type::now() - t0).count();
    r.test_accuracy = r.history.empty() ? 0 : r.history.back().test_acc;
    if (!lead) return r;
    nn::save_weights(*task.model, r.out_dir + "/model.safetensors");
    confusion(task, tape, data.test, r.out_dir);
    fmt::print("test accuracy {:.2f}% after {} epochs; training time {:.1f}s\n", 100 * r.test_accuracy,
               r.history.empty() ? o.epochs : r.history.back().epoch, r.seconds);
    fmt::print("metrics: {}/metrics.csv  plot: {}/curves.png  weights: {}/model.safetensors\n", r.out_dir, r.out_dir, r.out_dir);
    return r;
}

}  // namespace xgrad::examples
