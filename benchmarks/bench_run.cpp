// Runs every (workload, threads, implementation) in its own process, in rounds with the peers
// interleaved, and prints markdown tables with ratios from the same run (docs/benchmarks.md):
//  1. the agreement check of every workload, before any timing: libtorch's initial weights and data
//     loaded into xgrad by name, loss and every parameter's gradient compared after one run of each
//     side's timed step (seq_workloads.hpp); the timed xgrad processes start from the same files, and
//     the first step's loss of every timed process must equal the check's;
//  2. the first-order and second-order tables: libtorch in each configuration a competent user would
//     try (thread counts, default threading, GOMP_SPINCOUNT, malloc thresholds, channels_last), the
//     fastest one for the ratio and its name; the roofline (GFLOP per step from the shapes, achieved
//     GFLOP/s, % of the sgemm peak measured in this run at the same thread count); a ratio is printed
//     only when the check passed and the first-step losses agree;
//  3. the change of every tape / libtorch ratio against a baseline report (JSON) of the same machine,
//     > 5 % worse flagged.
// A block (one round at one thread setting) runs between two host checks, the same sgemm process and
// memory probe (a triad over 192 MiB) at its start and its end; a block whose GEMM check fell below
// 85 % of the first pass's best (its memory probe below 75 % of the median) at that thread setting ran on a machine
// that had lost a vCPU, the core or part of its memory bandwidth to other tenants, and is run again
// (--redo times at most per thread setting), the attempts all listed in the report.
//   bench_run [--threads 1,2] [--rounds 2] [--workloads mnist_softmax_sgd,mlp_b64,...] [--quick] [--out FILE]
//             [--json FILE] [--baseline FILE|none] [--torch-configs best|plain] [--check-only]
//             [--base-bin-dir DIR]   (DIR/bench_xgrad: a second build's tape, e.g. an older commit, timed beside this one)
//             [--redo N]             (blocks run again at most per thread setting when a host check fell, default 2)
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iterator>
#include <map>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "seq_workloads.hpp"

#ifndef XGRAD_SOURCE_DIR
#define XGRAD_SOURCE_DIR "."
#endif

namespace {

using xgrad::bench::check_tolerance;

struct Result {
    double median = 0;  // mean over rounds of the per-round medians
    double spread = 0;  // (max − min) / min over rounds
    double p10_spread = 0;  // the same over the rounds' 10th percentiles
    std::vector<double> rounds, rounds_p10;  // per round (NAN where the process failed)
    double peak = 0, base = 0, allocs = 0, blas_allocs = 0, gflops = 0, minflt = 0;
    double loss_first = NAN;  // of round 1's process
    bool loss_finite = true, loss_consistent = true, has_loss = false;
    bool ok = false;
};

std::vector<std::string> split(const std::string& s)
{
    std::vector<std::string> out;
    std::stringstream ss(s);
    for (std::string x; std::getline(ss, x, ',');)
        if (!x.empty()) out.push_back(x);
    return out;
}

nlohmann::json run_one(const std::string& cmd)
{
    FILE* p = popen((cmd + " 2>/dev/null").c_str(), "r");
    if (!p) return {};
    std::string out;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) out += buf;
    const int rc = pclose(p);
    if (rc != 0 || out.empty()) return {};
    try {
        return nlohmann::json::parse(out.substr(out.rfind('{')));
    } catch (...) {
        return {};
    }
}

double rel_diff(double a, double b) { return std::abs(a - b) / std::max(std::abs(b), 1e-30); }

/// A warning for the report when OpenBLAS runs narrower kernels than the CPU has: AVX-512 (F, BW, VL,
/// DQ) on the CPU but not an AVX-512 family in OpenBLAS (OPENBLAS_CORETYPE=Haswell in the environment,
/// or its generic fallback). libtorch's dense layers go through OpenBLAS, so they run slower than they
/// could and the ratios flatter xgrad; scripts/bench chooses SKYLAKEX then. Empty when nothing is wrong.
std::string openblas_warning(const std::string& bin_dir)
{
    std::string core;
    if (FILE* p = popen(("OPENBLAS_VERBOSE=2 '" + bin_dir + "/bench_xgrad' 2>&1").c_str(), "r")) {
        char buf[512];
        while (std::fgets(buf, sizeof buf, p))
            if (core.empty() && std::strncmp(buf, "Core: ", 6) == 0) core = std::string(buf + 6, std::strcspn(buf + 6, "\n"));
        pclose(p);
    }
    std::ifstream cpuinfo("/proc/cpuinfo");
    std::string line;
    bool avx512 = false;
    while (std::getline(cpuinfo, line))
        if (line.rfind("flags", 0) == 0) {
            std::istringstream ss(line);
            std::set<std::string> f{std::istream_iterator<std::string>(ss), {}};
            avx512 = f.count("avx512f") && f.count("avx512bw") && f.count("avx512vl") && f.count("avx512dq");
            break;
        }
    if (!avx512 || core.empty() || core == "SkylakeX" || core == "Cooperlake" || core == "SapphireRapids") return "";
    return fmt::format("**⚠ OpenBLAS runs its {} kernels on a CPU with AVX-512**: libtorch's dense layers (and xgrad's "
                       "double GEMMs) run slower than they could, so the ratios flatter xgrad; `scripts/bench` sets "
                       "OPENBLAS_CORETYPE=SKYLAKEX for every process then.\n\n",
                       core);
}

std::string fmt_val(const Result& r, const std::string& unit)
{
    if (!r.ok) return "–";
    std::string s = unit == "ns/op" ? fmt::format("{:.0f} ns/op", r.median) : fmt::format("{:.3g} ms", r.median);
    if (r.spread > 0.10) s += " ⚠";
    return s;
}

// Sequence workloads: no hand-written step.
bool sequence(const std::string& w) { return w == "lstm_step" || w == "gru_step" || w == "attention_step"; }
bool second_order(const std::string& w) { return w.rfind("hvp_", 0) == 0 || w.rfind("double_backprop_", 0) == 0; }
// Workloads with convolutions: libtorch also runs them in channels_last.
bool convolutional(const std::string& w)
{
    return w == "lenet" || w == "resnet_b64" || w == "bn_conv" || w == "hvp_lenet" || w == "lenet_nomkldnn" ||
           w == "cnn_sigmoid_avgpool";
}

// Workloads without a hand-written step: tape_* (bookkeeping only), the normalization networks but
// bn_conv, the sequence workloads.
bool has_hand(const std::string& w)
{
    return w.rfind("tape_", 0) != 0 && w != "resnet_b64" && w != "layernorm_mlp" && !sequence(w) && !second_order(w) &&
           w != "lenet_nomkldnn" && w != "cnn_sigmoid_avgpool";
}

/// GFLOP of one step, from the shapes (docs/benchmarks.md, "FLOP per step"): 2 × the multiply-adds of
/// every GEMM and convolution of the forward and the backward (×3 for a layer whose input needs a
/// gradient: forward, dW, dX; ×2 for one whose input is data: forward, dW); the second-order workloads
/// count the GEMMs of their recorded backward too. Element-wise ops, reductions, normalization,
/// softmax and the SGD update are not counted. 0 = not a compute workload (tape_*).
double gflop_per_step(const std::string& w)
{
    auto conv = [](double B, double cin, double cout, double k, double oh, double ow) { return B * cout * oh * ow * cin * k * k; };
    const double mlp_first = 784.0 * 256, mlp_rest = 256.0 * 128 + 128.0 * 10;  // MACs per sample
    double macs = 0;
    if (w == "mnist_softmax_sgd") macs = 3 * 64.0 * 784 * 10;
    if (w == "mlp_b64" || w == "layernorm_mlp") macs = 64 * (2 * mlp_first + 3 * mlp_rest);
    if (w == "mlp_b256") macs = 256 * (2 * mlp_first + 3 * mlp_rest);
    const double lenet_c1 = conv(64, 1, 6, 5, 28, 28), lenet_rest = conv(64, 6, 16, 5, 10, 10) + 64 * (400.0 * 120 + 120 * 84 + 84 * 10);
    if (w == "lenet" || w == "lenet_nomkldnn") macs = 2 * lenet_c1 + 3 * lenet_rest;
    if (w == "resnet_b64")
        macs = 2 * conv(64, 1, 16, 3, 28, 28) +
               3 * (2 * conv(64, 16, 16, 3, 28, 28) + conv(64, 16, 32, 3, 14, 14) + conv(64, 32, 32, 3, 14, 14) +
                    conv(64, 16, 32, 1, 14, 14) + conv(64, 32, 64, 3, 7, 7) + conv(64, 64, 64, 3, 7, 7) +
                    conv(64, 32, 64, 1, 7, 7) + 64.0 * 64 * 10);
    if (w == "bn_conv") macs = 2 * conv(64, 16, 16, 3, 28, 28);
    if (w == "cnn_sigmoid_avgpool") macs = 2 * conv(64, 1, 8, 5, 24, 24) + 3 * 64.0 * 1152 * 10;
    namespace seq = xgrad::bench::seq;
    const double LB = double(seq::L * seq::B), E = seq::E, H = seq::H, V = seq::V;
    if (w == "lstm_step") macs = 3 * (LB * 4 * H * (E + H) + LB * 4 * H * (H + H) + LB * H * V);
    if (w == "gru_step") macs = 3 * (LB * 3 * H * (E + H) + LB * 3 * H * (H + H) + LB * H * V);
    const double BL = double(seq::BA * seq::LA), D = seq::D, FF = seq::FF, La = seq::LA, dh = double(seq::D / seq::NH);
    if (w == "attention_step")
        macs = 3 * (BL * D * 3 * D + 2 * double(seq::BA * seq::NH) * La * La * dh + BL * D * D + 2 * BL * D * FF);
    if (w == "mm_512") macs = 3 * 512.0 * 512 * 512;
    if (w == "mm_1024") macs = 3 * 1024.0 * 1024 * 1024;
    // Hessian-vector product: per GEMM layer 9 GEMMs of its size (forward; dW, dX; the backward over
    // those: 2 each; the forward's dW, dX again), 4 for the first layer (its input is data).
    if (w == "hvp_mlp") macs = 64 * (4 * mlp_first + 9 * mlp_rest);
    if (w == "hvp_lenet") macs = 4 * lenet_c1 + 9 * lenet_rest;
    // CE + λ‖∂CE/∂x‖²: per layer forward, dX, the backward over dX (2) and the forward's dW, dX: 6;
    // the first layer 5 (no gradient for x itself).
    if (w == "double_backprop_mlp") macs = 64 * (5 * mlp_first + 6 * mlp_rest);
    return 2 * macs / 1e9;
}

/// One libtorch configuration (docs/benchmarks.md, "libtorch's best configuration").
struct TorchConfig {
    std::string name;     // e.g. "T2+spin1k+malloc"
    int threads = 1;      // 0 = libtorch's default threading
    bool spin = false;    // GOMP_SPINCOUNT=1000
    bool malloc = false;  // glibc keeps freed memory
    bool cl = false;      // channels_last
    std::string command(const std::string& bin_dir, const std::string& w) const
    {
        std::string env;
        if (spin) env += "GOMP_SPINCOUNT=1000 ";
        if (malloc) env += "MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 MALLOC_TOP_PAD_=67108864 ";
        return env + bin_dir + "/bench_torch " + w + " " + std::to_string(threads) + (cl ? " channels_last" : "");
    }
};

/// The configurations run at thread setting t; the row of t also takes every configuration of the
/// smaller settings of the same run (a user with 2 cores would try 1 thread).
std::vector<TorchConfig> torch_configs(const std::string& w, int t, bool plain)
{
    const std::string T = "T" + std::to_string(t);
    std::vector<TorchConfig> c{{T, t}};
    if (plain) return c;
    c.push_back({T + "+malloc", t, false, true});
    if (t > 1) {
        c.push_back({T + "+spin1k", t, true, false});
        c.push_back({T + "+spin1k+malloc", t, true, true});
        c.push_back({"default", 0});
        c.push_back({"default+spin1k+malloc", 0, true, true});
    }
    if (convolutional(w)) {
        c.push_back({T + "+cl", t, false, false, true});
        c.push_back({T + (t > 1 ? "+spin1k" : "") + "+malloc+cl", t, t > 1, true, true});
    }
    return c;
}

/// The agreement check of one workload: bench_torch dumps its weights, data, loss and gradients under
/// `prefix`, bench_xgrad loads them and prints the differences (seq_workloads.hpp).
struct Check {
    bool ok = false;
    bool dumped = false;  // the files exist: the timed xgrad processes start from them
    nlohmann::json j;     // bench_xgrad check's line (null if it printed none)
    std::string error;    // the first line either program wrote to stderr, when one failed
};

Check run_check(const std::string& bin_dir, const std::string& prefix, const std::string& w)
{
    Check c;
    const std::string err = prefix + ".err";
    auto first_error_line = [&] {
        std::ifstream f(err);
        std::string line;
        while (std::getline(f, line))
            if (!line.empty()) return line;
        return std::string("(no message)");
    };
    auto sh = [&](const std::string& cmd, std::string& out) {
        FILE* p = popen((cmd + " 2>>" + err).c_str(), "r");
        if (!p) return -1;
        char buf[4096];
        while (std::fgets(buf, sizeof buf, p)) out += buf;
        return pclose(p);
    };
    std::string out;
    if (sh(bin_dir + "/bench_torch " + w + " 1 dump " + prefix, out) != 0) {
        c.error = "bench_torch dump: " + first_error_line();
    } else {
        c.dumped = true;
        out.clear();
        const int rc = sh(bin_dir + "/bench_xgrad check " + w + " 1 " + prefix, out);
        if (out.rfind('{') != std::string::npos) {
            try {
                c.j = nlohmann::json::parse(out.substr(out.rfind('{')));
                c.ok = rc == 0 && c.j.value("ok", false);
            } catch (...) {
            }
        }
        if (c.j.is_null()) c.error = "bench_xgrad check: " + first_error_line();
    }
    std::remove(err.c_str());
    return c;
}

/// The newest JSON report committed under benchmarks/results/ (names start with the date), or "".
/// This machine, as reports record it: the CPU model and the CPUs the process may use. Ratios
/// are compared only between reports of the same machine: another CPU changes both sides.
std::string machine_id()
{
    std::ifstream in("/proc/cpuinfo");
    std::string line, model = "unknown CPU", family = "?", number = "?";
    auto value = [&] { return line.substr(line.find_first_not_of(" \t", line.find(':') + 1)); };
    while (std::getline(in, line) && !line.empty()) {  // the first processor's block
        if (line.find(':') == std::string::npos || line.find(':') + 1 >= line.size()) continue;
        if (line.rfind("model name", 0) == 0) model = value();
        else if (line.rfind("cpu family", 0) == 0) family = value();
        else if (line.rfind("model", 0) == 0 && line.find_first_of(" \t") == 5) number = value();
    }
    return fmt::format("{} (family {} model {}, {} CPUs)", model, family, number, std::thread::hardware_concurrency());
}

/// The newest committed runner report (benchmarks/results/YYYY-MM-DD-HHMM-host.json) made on this
/// machine; "" when there is none. `skipped` counts the newer ones from other machines.
std::string newest_committed_report(const std::string& machine, int& skipped)
{
    skipped = 0;
    FILE* p = popen("git -C '" XGRAD_SOURCE_DIR "' ls-files 'benchmarks/results/*.json' 2>/dev/null", "r");
    if (!p) return "";
    std::vector<std::string> files;
    char buf[4096];
    while (std::fgets(buf, sizeof buf, p)) {
        std::string f(buf);
        while (!f.empty() && (f.back() == '\n' || f.back() == '\r')) f.pop_back();
        // runner reports are named YYYY-MM-DD-HHMM-host.json; others (tta-*.json) are not baselines
        const std::size_t slash = f.rfind('/');
        const std::string base = slash == std::string::npos ? f : f.substr(slash + 1);
        if (!base.empty() && base[0] >= '0' && base[0] <= '9') files.push_back(f);
    }
    pclose(p);
    std::sort(files.rbegin(), files.rend());
    for (const std::string& f : files) {
        const std::string path = std::string(XGRAD_SOURCE_DIR) + "/" + f;
        try {
            const nlohmann::json j = nlohmann::json::parse(std::ifstream(path));
            if (j.is_object() && j.value("machine", std::string()) == machine) return path;
        } catch (const std::exception&) {
        }
        ++skipped;
    }
    return "";
}

}  // namespace

int main(int argc, char** argv)
{
    CLI::App app{"xgrad benchmarks side by side with libtorch and hand-written backprop"};
    std::string threads_s = "1,2", workloads_s =
        "mnist_softmax_sgd,mlp_b64,mlp_b256,lenet,cnn_sigmoid_avgpool,resnet_b64,bn_conv,layernorm_mlp,lstm_step,gru_step,attention_step,tape_1,"
        "tape_64x64,mm_512,mm_1024,hvp_mlp,hvp_lenet,double_backprop_mlp";
    int rounds = 2, redo = 2;
    bool quick = false, check_only = false;
    std::string out_file, json_file, baseline = "auto", torch_mode = "best", bin_dir = ".", base_dir;
    app.add_option("--threads", threads_s, "thread settings, comma separated")->capture_default_str();
    app.add_option("--workloads", workloads_s, "workloads, comma separated")->capture_default_str();
    app.add_option("--rounds", rounds, "rounds of every configuration")->capture_default_str();
    app.add_option("--redo", redo,
                   "blocks (a round at one thread setting) run again at most per thread setting when a host check fell "
                   "below 85 % of the best (0 with --quick unless given)")
        ->check(CLI::Range(0, 10))
        ->capture_default_str();
    app.add_flag("--quick", quick, "short timing (smoke test; figures not for reporting)");
    app.add_flag("--check-only", check_only, "run the agreement checks only; exit status 1 if one fails");
    app.add_option("--out", out_file, "also write the tables to this file");
    app.add_option("--json", json_file, "write the results as JSON to this file (the next run's --baseline)");
    app.add_option("--baseline", baseline,
                   "JSON report to compare the ratios with; auto = the newest committed runner report of this machine, none = no comparison")
        ->capture_default_str();
    app.add_option("--torch-configs", torch_mode, "best: every libtorch configuration, the fastest for the ratio; plain: T<n> only")
        ->check(CLI::IsMember({"best", "plain"}))
        ->capture_default_str();
    app.add_option("--bin-dir", bin_dir, "directory of bench_xgrad and bench_torch")->capture_default_str();
    app.add_option("--base-bin-dir", base_dir,
                   "directory of a second build's bench_xgrad (e.g. an older commit): its tape is timed beside this one's");
    CLI11_PARSE(app, argc, argv);
    if (quick) setenv("XGRAD_BENCH_QUICK", "1", 1);
    if (quick && !app.count("--redo")) redo = 0;  // a smoke test's short processes make no reliable host check
    const auto started = std::chrono::steady_clock::now();

    // The baseline is read before any timing: a file that is not a bench_run report (the
    // time-to-accuracy JSON, say) is refused now, not after the run.
    nlohmann::json baseline_json;
    const std::string machine = machine_id();
    int other_machines = 0;
    std::string baseline_file =
        baseline == "auto" ? newest_committed_report(machine, other_machines) : baseline == "none" ? "" : baseline;
    if (baseline == "auto" && baseline_file.empty())
        fmt::print(stderr, "note: no committed report from this machine ({}; {} from others): no comparison\n", machine,
                   other_machines);
    if (!baseline_file.empty()) {
        std::string why;
        std::ifstream in(baseline_file);
        try {
            if (!in) throw std::runtime_error("cannot open the file");
            baseline_json = nlohmann::json::parse(in);
            if (!baseline_json.is_object() || !baseline_json.contains("rows") || !baseline_json["rows"].is_array())
                why = "not a bench_run report (no \"rows\" array)";
        } catch (const std::exception& e) {
            why = e.what();
        }
        if (why.empty() && baseline_json.value("machine", std::string()) != machine)
            fmt::print(stderr, "note: the baseline {} comes from another machine ({}); its ratios are not comparable\n",
                       baseline_file, baseline_json.value("machine", std::string("machine not recorded")));
        if (!why.empty()) {
            if (baseline != "auto") {
                fmt::print(stderr, "bench_run: --baseline {}: {}\n", baseline_file, why);
                return 2;
            }
            fmt::print(stderr, "note: cannot use the baseline {} ({}); no comparison\n", baseline_file, why);
            baseline_json = nlohmann::json();
            baseline_file.clear();
        }
    }

    const bool have_torch = std::ifstream(bin_dir + "/bench_torch").good();
    if (!have_torch) fmt::print(stderr, "note: bench_torch not built (libtorch not found): no libtorch column, no check\n");
    const auto threads = split(threads_s), workloads = split(workloads_s);

    // 1. The agreement check of every workload, before any timing. The files stay until the end: the
    // timed xgrad processes start from libtorch's weights and data.
    std::map<std::string, Check> checks;
    std::map<std::string, std::string> prefix_of;
    char dir_template[] = "/tmp/xgrad_bench_check_XXXXXX";
    const char* dir = have_torch ? mkdtemp(dir_template) : nullptr;
    if (dir)
        for (const auto& w : workloads) {
            if (w == "lenet_nomkldnn") continue;  // libtorch only
            fmt::print(stderr, "\rcheck {:<24}", w);
            const std::string prefix = std::string(dir) + "/" + w;
            checks[w] = run_check(bin_dir, prefix, w);
            if (checks[w].dumped) prefix_of[w] = prefix;
        }
    auto check_table = [&] {
        std::ostringstream md;
        md << "| workload | loss libtorch | loss xgrad | loss rel. diff | max grad rel. diff (parameter) | agree (≤ "
           << fmt::format("{:g}", check_tolerance) << ") |\n|---|---|---|---|---|---|\n";
        for (const auto& w : workloads) {
            if (!checks.count(w)) continue;
            const Check& c = checks[w];
            if (c.j.is_null()) {
                md << fmt::format("| {} | – | – | – | – | **no**: {} |\n", w, c.error);
                continue;
            }
            md << fmt::format("| {} | {:.7g} | {:.7g} | {:.2g} | {:.2g} ({}) | {} |\n", w, c.j["loss_libtorch"].get<double>(),
                              c.j["loss_xgrad"].get<double>(), c.j["loss_rel"].get<double>(),
                              c.j["grad_max_rel"].get<double>(), c.j["worst"].get<std::string>(), c.ok ? "yes" : "**no**");
        }
        md << "\nlibtorch's initial weights and data loaded into xgrad by name, one run of each side's timed step; "
              "relative difference per tensor = max |xgrad − libtorch| / max |libtorch| (hvp_*: the Hessian-vector "
              "products).\n";
        return md.str();
    };
    auto cleanup = [&] {
        if (!dir) return;
        for (const auto& [w, prefix] : prefix_of)
            for (const char* suffix : {".weights.safetensors", ".input.safetensors", ".ref.safetensors"}) std::remove((prefix + suffix).c_str());
        rmdir(dir);
    };
    if (check_only) {
        fmt::print(stderr, "\r{}\r", std::string(60, ' '));
        const std::string md = check_table();
        fmt::print("{}", md);
        nlohmann::json j = nlohmann::json::array();
        bool all = !checks.empty();
        for (const auto& [w, c] : checks) {
            j.push_back({{"workload", w}, {"ok", c.ok}, {"result", c.j}, {"error", c.error}});
            all = all && c.ok;
        }
        if (!json_file.empty()) std::ofstream(json_file) << nlohmann::json{{"checks", j}}.dump(1) << "\n";
        if (!out_file.empty()) std::ofstream(out_file) << md;
        cleanup();
        return all ? 0 : 1;
    }

    // 2. Timing. raw[workload][threads][impl] = per-round JSON; libtorch configurations are impls
    // "libtorch:<config>".
    std::map<std::string, std::map<std::string, std::map<std::string, std::vector<nlohmann::json>>>> raw;
    std::map<std::string, std::vector<nlohmann::json>> peak_raw;  // "<impl> gemm_<n>:<t>"
    const bool plain = torch_mode == "plain";
    // One block: round `round` at thread setting t, its results stored at index round − 1 (a block run
    // again overwrites them), between two host checks (the same sgemm gemm_1024 process and the same
    // memory probe, stream triad).
    struct Attempt {
        int round;
        std::string t, when;
        double start = 0, end = 0;    // the GEMM host checks, GFLOP/s (0: failed)
        double mstart = 0, mend = 0;  // the memory probes, GB/s (0: failed)
        double score = 1;             // lowest check / its floor × the reference (< 1: below the floor)
        bool kept = true;
    };
    std::vector<Attempt> attempts;
    auto gflops_of = [](const nlohmann::json& j) { return !j.is_null() && j.contains("gflops") ? j["gflops"].get<double>() : 0.0; };
    auto gbps_of = [](const nlohmann::json& j) { return !j.is_null() && j.contains("gbps") ? j["gbps"].get<double>() : 0.0; };
    auto put = [](std::vector<nlohmann::json>& v, int round, nlohmann::json j) {
        if (v.size() < std::size_t(round)) v.resize(std::size_t(round));
        v[std::size_t(round) - 1] = std::move(j);
    };
    auto run_block = [&](int round, const std::string& t, const char* label) {
        Attempt a{round, t, "", 0, 0, 0, 0, 1, true};
        char when[32];
        const std::time_t now = std::time(nullptr);
        std::strftime(when, sizeof when, "%Y-%m-%d %H:%M", std::gmtime(&now));
        a.when = when;
        for (const char* impl : {"sgemm", "blas"})  // the peak of this thread setting: square GEMMs
            for (const char* n : {"gemm_512", "gemm_1024"}) {
                const std::string key = std::string(impl) + " " + n;
                fmt::print(stderr, "\r{}round {}/{}  T{}  peak {:<24}", label, round, rounds, t, key);
                nlohmann::json j = run_one(bin_dir + "/bench_xgrad " + key + " " + t);
                if (key == "sgemm gemm_1024") a.start = gflops_of(j);
                put(peak_raw[key + ":" + t], round, std::move(j));
            }
        a.mstart = gbps_of(run_one(bin_dir + "/bench_xgrad stream triad " + t));
        for (const auto& w : workloads) {
            const std::string pf = prefix_of.count(w) ? " " + prefix_of[w] : "";
            std::vector<std::pair<std::string, std::string>> cmds;
            if (have_torch)
                for (const auto& c : torch_configs(w, std::stoi(t), plain))
                    cmds.emplace_back("libtorch:" + c.name, c.command(bin_dir, w));
            cmds.emplace_back("tape", bin_dir + "/bench_xgrad tape " + w + " " + t + pf);
            if (!base_dir.empty()) cmds.emplace_back("base", base_dir + "/bench_xgrad tape " + w + " " + t);
            if (second_order(w)) {  // the first-order gradient of the same network, both sides
                cmds.emplace_back("grad", bin_dir + "/bench_xgrad grad " + w + " " + t + pf);
                if (have_torch) cmds.emplace_back("libtorch_grad", bin_dir + "/bench_torch " + w + " " + t + " grad");
            } else if (has_hand(w)) {
                cmds.emplace_back("hand", bin_dir + "/bench_xgrad hand " + w + " " + t + pf);
            }
            if (w.rfind("mm_", 0) == 0) {
                cmds.emplace_back("blas", bin_dir + "/bench_xgrad blas gemm_" + w.substr(3) + " " + t);
                cmds.emplace_back("sgemm", bin_dir + "/bench_xgrad sgemm gemm_" + w.substr(3) + " " + t);
            }
            for (const auto& [impl, cmd] : cmds) {
                fmt::print(stderr, "\r{}round {}/{}  T{}  {:<14} {:<28}", label, round, rounds, t, w, impl);
                put(raw[w][t][impl], round, run_one(cmd));
            }
        }
        fmt::print(stderr, "\r{}round {}/{}  T{}  host check at the end{:<20}", label, round, rounds, t, "");
        a.end = gflops_of(run_one(bin_dir + "/bench_xgrad sgemm gemm_1024 " + t));
        a.mend = gbps_of(run_one(bin_dir + "/bench_xgrad stream triad " + t));
        return a;
    };
    for (int round = 1; round <= rounds; ++round)
        for (const auto& t : threads) attempts.push_back(run_block(round, t, ""));
    // Blocks with a host check below its floor: run again, the lowest first, while the redo budget of
    // that thread setting lasts. The floors are fractions of the first pass's checks at that setting,
    // fixed, so that a redo is judged against the bar of the block it repeats: 85 % of the best GEMM
    // check (no GEMM runs faster than the machine, and a lost vCPU halves the rate while the neighbours
    // move it by 5–10 %); 75 % of the median memory probe (the probe moves 20–35 % with the neighbours'
    // traffic, both ways, so one high reading must not set the bar). A redone block replaces the
    // results of the block it repeats only when its score is higher; the report lists every attempt.
    constexpr double gemm_floor = 0.85, memory_floor = 0.75;
    std::map<std::string, std::pair<double, double>> reference;  // t → {best GFLOP/s, median GB/s} of the first pass
    for (const auto& t : threads) {
        std::vector<double> g, m;
        for (const auto& a : attempts)
            if (a.t == t) {
                for (double v : {a.start, a.end})
                    if (v > 0) g.push_back(v);
                for (double v : {a.mstart, a.mend})
                    if (v > 0) m.push_back(v);
            }
        auto median = [](std::vector<double> v) {
            if (v.empty()) return 0.0;
            std::sort(v.begin(), v.end());
            const std::size_t h = v.size() / 2;
            return v.size() % 2 ? v[h] : (v[h - 1] + v[h]) / 2;
        };
        reference[t] = {g.empty() ? 0.0 : *std::max_element(g.begin(), g.end()), median(m)};
    }
    // min over the four checks of check / (floor × reference): below 1, the block is below a floor
    auto score_of = [&](const Attempt& a) {
        const auto [g, m] = reference[a.t];
        double s = 1e9;
        if (g > 0) s = std::min({s, a.start / (gemm_floor * g), a.end / (gemm_floor * g)});
        if (m > 0) s = std::min({s, a.mstart / (memory_floor * m), a.mend / (memory_floor * m)});
        return s;
    };
    for (auto& a : attempts) a.score = score_of(a);
    for (const auto& t : threads)
        for (int left = redo; left > 0; --left) {
            std::size_t worst = attempts.size();
            for (std::size_t i = 0; i < attempts.size(); ++i)
                if (attempts[i].t == t && attempts[i].kept && attempts[i].score < 1 &&
                    (worst == attempts.size() || attempts[i].score < attempts[worst].score))
                    worst = i;
            if (worst == attempts.size()) break;
            const int round = attempts[worst].round;
            // the kept results of that block, restored if the new attempt is no better
            std::map<std::string, std::map<std::string, nlohmann::json>> saved;  // [w][impl]
            std::map<std::string, nlohmann::json> saved_peak;
            for (auto& [w, by_t] : raw)
                for (auto& [impl, v] : by_t[t]) saved[w][impl] = v[std::size_t(round) - 1];
            for (auto& [key, v] : peak_raw)
                if (key.size() > t.size() && key.compare(key.size() - t.size() - 1, std::string::npos, ":" + t) == 0)
                    saved_peak[key] = v[std::size_t(round) - 1];
            Attempt a = run_block(round, t, "redo: ");
            a.score = score_of(a);
            if (a.score > attempts[worst].score) {
                attempts[worst].kept = false;
            } else {  // no better: the first results stay
                a.kept = false;
                for (auto& [w, by_impl] : saved)
                    for (auto& [impl, j] : by_impl) raw[w][t][impl][std::size_t(round) - 1] = j;
                for (auto& [key, j] : saved_peak) peak_raw[key][std::size_t(round) - 1] = j;
            }
            attempts.push_back(a);
        }
    fmt::print(stderr, "\r{}\r", std::string(80, ' '));
    cleanup();

    auto summarize = [&](const std::vector<nlohmann::json>& runs) {
        Result r;
        double lo = 1e300, hi = 0, lo10 = 1e300, hi10 = 0;
        int n = 0;
        for (const auto& j : runs) {
            if (j.is_null()) {
                r.rounds.push_back(NAN), r.rounds_p10.push_back(NAN);
                continue;
            }
            const double m = j["median"].get<double>(), q = j.value("p10", m);
            r.rounds.push_back(m), r.rounds_p10.push_back(q);
            lo10 = std::min(lo10, q), hi10 = std::max(hi10, q);
            r.median += m, lo = std::min(lo, m), hi = std::max(hi, m), ++n;
            r.peak = std::max(r.peak, j["peak_mib"].get<double>());
            r.base = j["base_mib"].get<double>();
            r.allocs = j["allocs_per_rep"].get<double>();
            r.blas_allocs = j.value("blas_allocs_per_rep", j.value("dnnl_allocs_per_rep", 0.0));  // key before 2026-12-01
            r.minflt = j.value("minflt_per_rep", 0.0);
            if (j.contains("gflops")) r.gflops += j["gflops"].get<double>();
            if (j.contains("loss_first")) {
                const double l = j["loss_first"].get<double>();
                r.has_loss = true;
                r.loss_finite = r.loss_finite && j.value("loss_finite", false);
                if (std::isnan(r.loss_first))
                    r.loss_first = l;
                else if (rel_diff(l, r.loss_first) > check_tolerance)
                    r.loss_consistent = false;  // the same process gave another first loss in another round
            }
        }
        if (n) {
            r.ok = true;
            r.median /= n;
            r.gflops /= n;
            r.spread = (hi - lo) / lo;
            r.p10_spread = (hi10 - lo10) / lo10;
        }
        return r;
    };
    // The sgemm peak of thread setting t: the highest rate any GEMM process of this run reached at t
    // (xgrad's sgemm and cblas_sgemm, n = 512 and 1024, every round; also the mm_* rows' gemm_n). The
    // highest, not the mean: on a shared machine a slow round says more about the load than the GEMM.
    std::map<std::string, double> peak;
    std::map<std::string, std::string> peak_note;
    for (const auto& t : threads) {
        std::string best;
        auto consider = [&](const std::string& what, const std::vector<nlohmann::json>& runs) {
            for (const auto& j : runs)
                if (!j.is_null() && j.contains("gflops") && j["gflops"].get<double>() > peak[t])
                    peak[t] = j["gflops"].get<double>(), best = what;
        };
        for (const char* impl : {"sgemm", "blas"})
            for (const char* n : {"gemm_512", "gemm_1024"}) {
                const std::string key = std::string(impl) + " " + n;
                consider(key, peak_raw[key + ":" + t]);
            }
        for (const char* mm : {"mm_512", "mm_1024"})
            if (raw.count(mm))
                for (const char* impl : {"sgemm", "blas"})
                    consider(std::string(impl) + " gemm_" + (mm + 3), raw[mm][t][impl]);
        peak_note[t] = fmt::format("T{}: {:.0f} GFLOP/s ({})", t, peak[t], best.empty() ? "no GEMM measured" : best);
    }
    // A timed process's first-step loss against the check's libtorch loss (same weights and data).
    auto loss_agrees = [&](const std::string& w, const Result& r) {
        if (!r.has_loss) return true;
        if (!r.loss_finite || !r.loss_consistent) return false;
        if (!checks.count(w) || checks[w].j.is_null()) return true;  // nothing to compare with
        return rel_diff(r.loss_first, checks[w].j["loss_libtorch"].get<double>()) <= check_tolerance;
    };
    struct Best {
        Result r;
        std::string config;
        std::vector<std::string> rejected;  // configurations whose losses did not agree
    };
    // libtorch's fastest configuration for the row (w, t): its own configurations and those of the
    // smaller thread settings of this run.
    auto best_torch = [&](const std::string& w, const std::string& t) {
        Best b;
        for (const auto& t2 : threads) {
            if (std::stoi(t2) > std::stoi(t)) continue;
            for (auto& [impl, runs] : raw[w][t2]) {
                if (impl.rfind("libtorch:", 0) != 0) continue;
                const Result r = summarize(runs);
                if (!r.ok) continue;
                const std::string name = impl.substr(9);
                if (!loss_agrees(w, r)) {
                    b.rejected.push_back(name);
                    continue;
                }
                if (!b.r.ok || r.median < b.r.median) b.r = r, b.config = name;
            }
        }
        return b;
    };
    // Why a row's tape / libtorch ratio is not printed, or "" when it is.
    auto refuse = [&](const std::string& w, const Result& tp, const Best& lt) -> std::string {
        if (!have_torch || !tp.ok || !lt.r.ok) return "no measurement";
        if (w != "lenet_nomkldnn" && (!checks.count(w) || !checks[w].ok)) return "check failed";
        if (!loss_agrees(w, tp)) return tp.loss_finite ? "tape's first loss ≠ libtorch's" : "tape's loss not finite";
        return "";
    };

    // The baseline's ratio of (w, t), and whether its rounds differed by more than 10 % on either side.
    auto baseline_ratio = [&](const std::string& w, const std::string& t, bool& noisy) -> double {
        if (baseline_json.is_null()) return NAN;
        for (const auto& row : baseline_json.value("rows", nlohmann::json::array()))
            if (row.value("workload", "") == w && row.value("threads", "") == t && row.contains("ratio") &&
                row["ratio"].is_number()) {
                noisy = row.value("tape_spread", 0.0) > 0.10 || row.value("libtorch_spread", 0.0) > 0.10;
                return row["ratio"].get<double>();
            }
        return NAN;
    };
    std::vector<std::string> regressions;
    // Every ratio more than 5 % worse is flagged; "noisy" when the rounds of this run's or the baseline's
    // row differed by more than 10 % (⚠), i.e. the change may be the machine's load.
    auto vs_baseline = [&](const std::string& w, const std::string& t, double ratio, bool noisy_now) {
        bool noisy = noisy_now;
        const double b = baseline_ratio(w, t, noisy);
        if (std::isnan(b) || std::isnan(ratio)) return std::string("–");
        noisy = noisy || noisy_now;
        const double change = ratio / b - 1;
        if (change > 0.05) {
            regressions.push_back(fmt::format("{} T{}: tape / libtorch {:.2f} → {:.2f} ({:+.0f} %){}", w, t, b, ratio,
                                              100 * change, noisy ? " (noisy: rounds differ by > 10 %)" : ""));
            return fmt::format("**{:+.0f} % ⚠**{}", 100 * change, noisy ? " (noisy)" : "");
        }
        return fmt::format("{:+.0f} %", 100 * change);
    };

    auto ratio = [](const Result& a, const Result& b) {
        return a.ok && b.ok ? fmt::format("{:.2f}", a.median / b.median) : std::string("–");
    };
    auto memory = [](const Result& lt, const Result& tp) {
        const std::string tape = tp.ok ? fmt::format("{:.0f} ({:+.0f})", tp.peak, tp.peak - tp.base) : std::string("–");
        return lt.ok ? fmt::format("{:.0f} ({:+.0f}) → {}", lt.peak, lt.peak - lt.base, tape) : tape;
    };
    // Roofline cell: achieved GFLOP/s and % of this run's sgemm peak at the same thread setting.
    auto roof = [&](const std::string& w, const std::string& t, const Result& r) {
        const double gf = gflop_per_step(w);
        if (gf <= 0 || !r.ok) return std::string("–");
        const double rate = gf / (r.median / 1e3);
        return peak[t] > 0 ? fmt::format("{:.1f} ({:.0f} %)", rate, 100 * rate / peak[t]) : fmt::format("{:.1f}", rate);
    };
    nlohmann::json rows = nlohmann::json::array();
    struct Noisy {
        std::string w, t;
        Result tape, torch;
        std::string config;
    };
    std::vector<Noisy> noisy_rows;  // rows whose rounds differ by more than 10 % on either side
    auto finite_or_null = [](const std::vector<double>& v) {
        nlohmann::json a = nlohmann::json::array();
        for (double x : v) a.push_back(std::isfinite(x) ? nlohmann::json(x) : nlohmann::json());
        return a;
    };
    std::vector<std::string> first, second;
    for (const auto& w : workloads) (second_order(w) ? second : first).push_back(w);
    // The ⚠ rows round by round: each side's medians and 10th percentiles, and tape / libtorch per round
    // (the two sides of a round run within a minute of each other). When the medians move and the 10th
    // percentiles do not, slow repetitions came in bursts inside the processes (the host taking the
    // CPU or the cache); when both move, the whole process ran slower.
    auto rounds_section = [&](const std::vector<Noisy>& list) {
        if (list.empty()) return std::string();
        auto values = [](const std::vector<double>& v, const std::string& unit) {
            std::string s;
            for (double x : v)
                s += (s.empty() ? "" : ", ") +
                     (std::isfinite(x) ? (unit == "ns/op" ? fmt::format("{:.0f}", x) : fmt::format("{:.3g}", x)) : "–");
            return s;
        };
        std::ostringstream o;
        int bursts = 0;
        o << "\nRounds of the ⚠ rows with both sides measured (medians; p10 = each process's 10th percentile, and "
             "the p10s' spread over the rounds):\n";
        for (const auto& n : list) {
            const std::string unit = n.w.rfind("tape_", 0) == 0 ? "ns/op" : "ms";
            std::string per_round;
            for (std::size_t i = 0; i < n.tape.rounds.size() && i < n.torch.rounds.size(); ++i)
                per_round += (per_round.empty() ? "" : ", ") +
                             (std::isfinite(n.tape.rounds[i] / n.torch.rounds[i])
                                  ? fmt::format("{:.2f}", n.tape.rounds[i] / n.torch.rounds[i])
                                  : std::string("–"));
            const bool burst = (n.tape.spread <= 0.10 || n.tape.p10_spread <= 0.10) &&
                               (n.torch.spread <= 0.10 || n.torch.p10_spread <= 0.10);
            bursts += burst;
            o << fmt::format("- {} T{}: tape {} {} (p10 {}, p10 spread {:.0f} %); libtorch {} {} {} (p10 {}, p10 spread "
                             "{:.0f} %); tape / libtorch per round {}{}\n",
                             n.w, n.t, values(n.tape.rounds, unit), unit, values(n.tape.rounds_p10, unit),
                             100 * n.tape.p10_spread, n.config, values(n.torch.rounds, unit), unit,
                             values(n.torch.rounds_p10, unit), 100 * n.torch.p10_spread, per_round,
                             burst ? "; bursts: the p10 within 10 %" : "");
        }
        o << fmt::format("\n{} of {} ⚠ rows moved by bursts inside the processes (their 10th percentiles within 10 % "
                         "where the medians were not).\n",
                         bursts, list.size());
        return o.str();
    };
    const bool with_base = !base_dir.empty();
    std::ostringstream md;
    if (!checks.empty()) md << check_table() << "\n";
    md << "Machine: " << machine << "; OPENBLAS_CORETYPE=" << (std::getenv("OPENBLAS_CORETYPE") ? std::getenv("OPENBLAS_CORETYPE") : "unset")
       << ".\n\n";
    md << openblas_warning(bin_dir);
    md << "sgemm peak of this run (the roofline's 100 %; the fastest GEMM process at that thread count; sgemm = "
          "xgrad's GEMM, blas = cblas_sgemm): ";
    for (std::size_t i = 0; i < threads.size(); ++i) md << (i ? "; " : "") << peak_note[threads[i]];
    md << ".\n\n";
    // The same GEMM process at the start and the end of every block: when it moves, the machine did
    // (other tenants, a vCPU taken away), and the workloads' rounds move with it. The spread is that of
    // the kept blocks' checks, both ends.
    md << "Host check at the start and the end of each round, `sgemm gemm_1024` in GFLOP/s and the memory probe "
          "(`stream triad`) in GB/s:";
    for (std::size_t i = 0; i < threads.size(); ++i) {
        std::string list;
        std::pair<double, double> lo{0, 0}, hi{0, 0};
        auto widen = [](std::pair<double, double>& l, std::pair<double, double>& h, double v, bool first) {
            if (v <= 0) return;
            double& a = first ? l.first : l.second;
            double& b = first ? h.first : h.second;
            a = a > 0 ? std::min(a, v) : v, b = std::max(b, v);
        };
        for (int round = 1; round <= rounds; ++round)
            for (const auto& a : attempts)
                if (a.t == threads[i] && a.round == round && a.kept) {
                    list += (list.empty() ? "" : ", ") +
                            fmt::format("{:.0f}/{:.0f} GF {:.0f}/{:.0f} GB/s", a.start, a.end, a.mstart, a.mend);
                    for (double g : {a.start, a.end}) widen(lo, hi, g, true);
                    for (double m : {a.mstart, a.mend}) widen(lo, hi, m, false);
                }
        md << (i ? ";" : "") << " T" << threads[i] << " " << (list.empty() ? "–" : list);
        auto spread = [](double l, double h) {
            return l > 0 ? fmt::format("{:.0f} %{}", 100 * (h - l) / l, h > 1.1 * l ? " ⚠" : "") : std::string("–");
        };
        md << " (spread: GEMM " << spread(lo.first, hi.first) << ", memory " << spread(lo.second, hi.second) << ")";
    }
    md << ".\n\n";
    {
        std::string redone;
        auto fmt_checks = [](const Attempt& a) {
            auto v = [](double x) { return x > 0 ? fmt::format("{:.0f}", x) : std::string("failed"); };
            return fmt::format("{}/{} GF {}/{} GB/s", v(a.start), v(a.end), v(a.mstart), v(a.mend));
        };
        for (std::size_t i = 0; i < attempts.size(); ++i) {
            const Attempt& a = attempts[i];
            if (a.kept) continue;
            std::size_t k = i;  // the kept attempt of the same block (there is always one)
            for (std::size_t j = 0; j < attempts.size(); ++j)
                if (attempts[j].t == a.t && attempts[j].round == a.round && attempts[j].kept) k = j;
            const Attempt& b = attempts[k];
            redone += fmt::format("- T{} round {}, {} UTC: {} (score {:.2f}); ", a.t, a.round, a.when, fmt_checks(a), a.score);
            redone += k > i ? fmt::format("set aside for the attempt of {} UTC: {} (score {:.2f})\n", b.when, fmt_checks(b), b.score)
                            : fmt::format("a second attempt, not kept: the one of {} UTC stays ({}; score {:.2f})\n", b.when,
                                          fmt_checks(b), b.score);
        }
        for (const auto& a : attempts)  // kept although below a floor
            if (a.kept && a.score < 1)
                redone += fmt::format("- T{} round {}, {} UTC: {} (score {:.2f}), kept: {}\n", a.t, a.round, a.when,
                                      fmt_checks(a), a.score, redo ? "no redo left" : "not run again (--redo 0)");
        if (!redone.empty()) {
            md << "Blocks below a host-check floor (GEMM < 85 % of the first pass's best, memory probe < 75 % of its median, "
                  "at their thread setting: the host took a vCPU, the core or memory bandwidth; score = the lowest check "
                  "over its floor, below 1 under it), run again up to "
               << redo << " time(s) per thread setting; the references at T";
            for (std::size_t i = 0; i < threads.size(); ++i)
                md << (i ? ", T" : "") << threads[i] << fmt::format(" {:.0f} GF and {:.0f} GB/s", reference[threads[i]].first,
                                                                   reference[threads[i]].second);
            md << ":\n" << redone << "\n";
        }
    }
    auto add_row = [&](const std::string& w, const std::string& t, const Result& tp, const Best& lt, const std::string& why,
                       double r) {
        nlohmann::json row{{"workload", w},
                           {"threads", t},
                           {"unit", w.rfind("tape_", 0) == 0 ? "ns/op" : "ms"},
                           {"tape", tp.ok ? nlohmann::json(tp.median) : nlohmann::json()},
                           {"tape_spread", tp.spread},
                           {"libtorch_spread", lt.r.spread},
                           {"tape_rounds", finite_or_null(tp.rounds)},
                           {"tape_p10_rounds", finite_or_null(tp.rounds_p10)},
                           {"libtorch_rounds", finite_or_null(lt.r.rounds)},
                           {"libtorch_p10_rounds", finite_or_null(lt.r.rounds_p10)},
                           {"libtorch", lt.r.ok ? nlohmann::json(lt.r.median) : nlohmann::json()},
                           {"libtorch_config", lt.config},
                           {"ratio", why.empty() ? nlohmann::json(r) : nlohmann::json()},
                           {"refused", why},
                           {"gflop_per_step", gflop_per_step(w)},
                           {"peak_gflops", peak[t]},
                           {"check_ok", checks.count(w) ? checks[w].ok : false}};
        rows.push_back(row);
        if (tp.ok && lt.r.ok && (tp.spread > 0.10 || lt.r.spread > 0.10)) noisy_rows.push_back({w, t, tp, lt.r, lt.config});
    };
    auto torch_cell = [&](const Best& b, const std::string& unit) {
        if (!b.r.ok) return std::string("–");
        std::string s = fmt_val(b.r, unit) + " (" + b.config + ")";
        if (!b.rejected.empty()) {
            s += "; losses off:";
            for (const auto& n : b.rejected) s += " " + n;
        }
        return s;
    };
    if (!first.empty()) {
        md << "| workload | threads | libtorch, best config | xgrad tape | hand-written | tape / libtorch | vs baseline | "
              "GFLOP/step | GFLOP/s tape (% peak) | GFLOP/s libtorch (% peak) | tape / hand | peak RSS MiB libtorch → tape "
              "(workload part) | allocs per step: libtorch / tape (+ inside oneDNN/OpenBLAS) | page faults per step libtorch / tape |"
           << (with_base ? " tape, base build | tape / base build |\n" : "\n");
        md << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" << (with_base ? "---|---|\n" : "\n");
        for (const auto& w : first)
            for (const auto& t : threads) {
                auto& m = raw[w][t];
                const Best lt = best_torch(w, t);
                const Result tp = summarize(m["tape"]), hd = summarize(m["hand"]), bl = summarize(m["blas"]),
                             sg = summarize(m["sgemm"]), bs = summarize(m["base"]);
                const std::string unit = w.rfind("tape_", 0) == 0 ? "ns/op" : "ms";
                const std::string why = refuse(w, tp, lt);
                const double r = tp.ok && lt.r.ok ? tp.median / lt.r.median : NAN;
                std::string hand_col = fmt_val(hd, unit), vs_hand = ratio(tp, hd);
                if (hd.ok && !loss_agrees(w, hd)) hand_col += " (first loss ≠ libtorch's)";
                if (bl.ok && sg.ok) {  // matmul: the plain GEMM rates at the same n beside the hand column
                    hand_col += fmt::format("; gemm_{}: cblas_sgemm {:.0f}, xgrad's sgemm {:.0f} GF/s", w.substr(3), bl.gflops,
                                            sg.gflops);
                    vs_hand += fmt::format(" ({:.0f} % of cblas_sgemm, {:.0f} % of xgrad's sgemm at n = {})",
                                           100 * tp.gflops / bl.gflops, 100 * tp.gflops / sg.gflops, w.substr(3));
                }
                md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |", w, t,
                                  torch_cell(lt, unit), fmt_val(tp, unit), hand_col,
                                  why.empty() ? fmt::format("{:.2f}", r) : "– (" + why + ")",
                                  why.empty() ? vs_baseline(w, t, r, tp.spread > 0.10 || lt.r.spread > 0.10) : std::string("–"),
                                  gflop_per_step(w) > 0 ? fmt::format("{:.3g}", gflop_per_step(w)) : std::string("–"),
                                  roof(w, t, tp), roof(w, t, lt.r), vs_hand, memory(lt.r, tp),
                                  fmt::format("{:.0f} / {:.0f} (+{:.0f})", lt.r.allocs, tp.allocs, tp.blas_allocs),
                                  fmt::format("{:.0f} / {:.0f}", lt.r.minflt, tp.minflt));
                if (with_base) md << fmt::format(" {} | {} |", fmt_val(bs, unit), ratio(tp, bs));
                md << "\n";
                add_row(w, t, tp, lt, why, r);
            }
    }
    if (!second.empty()) {
        md << "\n| workload | threads | libtorch, best config | xgrad tape | tape / libtorch | vs baseline | GFLOP/step | "
              "GFLOP/s tape (% peak) | GFLOP/s libtorch (% peak) | tape gradient (same network) | tape / tape gradient | "
              "libtorch gradient (T<n>) | libtorch / libtorch gradient | peak RSS MiB libtorch → tape (workload part) | allocs "
              "per step: libtorch / tape (+ inside oneDNN/OpenBLAS) |"
           << (with_base ? " tape, base build | tape / base build |\n" : "\n");
        md << "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|" << (with_base ? "---|---|\n" : "\n");
        for (const auto& w : second)
            for (const auto& t : threads) {
                auto& m = raw[w][t];
                const Best lt = best_torch(w, t);
                const Result tp = summarize(m["tape"]), gr = summarize(m["grad"]), lg = summarize(m["libtorch_grad"]),
                             bs = summarize(m["base"]);
                const std::string why = refuse(w, tp, lt);
                const double r = tp.ok && lt.r.ok ? tp.median / lt.r.median : NAN;
                md << fmt::format("| {} | {} | {} | {} | {} | {} | {:.3g} | {} | {} | {} | {} | {} | {} | {} | {} |", w, t,
                                  torch_cell(lt, "ms"), fmt_val(tp, "ms"),
                                  why.empty() ? fmt::format("{:.2f}", r) : "– (" + why + ")",
                                  why.empty() ? vs_baseline(w, t, r, tp.spread > 0.10 || lt.r.spread > 0.10) : std::string("–"),
                                  gflop_per_step(w), roof(w, t, tp),
                                  roof(w, t, lt.r), fmt_val(gr, "ms"), ratio(tp, gr), fmt_val(lg, "ms"), ratio(lt.r, lg),
                                  memory(lt.r, tp), fmt::format("{:.0f} / {:.0f} (+{:.0f})", lt.r.allocs, tp.allocs, tp.blas_allocs));
                if (with_base) md << fmt::format(" {} | {} |", fmt_val(bs, "ms"), ratio(tp, bs));
                md << "\n";
                add_row(w, t, tp, lt, why, r);
            }
    }
    const double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() / 60;
    md << fmt::format("\nmedians of {} round(s), each process timed per docs/benchmarks.md; ⚠ = rounds differ by more than 10%; "
                      "libtorch configurations: {}; run time {:.1f} min.\n",
                      rounds, plain ? "T<n> only (--torch-configs plain)" : "the fastest of those in docs/benchmarks.md", minutes);
    md << rounds_section(noisy_rows);
    if (!baseline_file.empty()) {
        md << "\nBaseline: " << baseline_file << " (" << baseline_json.value("date", std::string("undated")) << ", "
           << baseline_json.value("machine", std::string("machine not recorded")) << "). ";
        if (regressions.empty()) {
            md << "No tape / libtorch ratio more than 5 % worse.\n";
        } else {
            md << "**Ratios more than 5 % worse than the baseline's:**\n";
            for (const auto& r : regressions) md << "- " << r << "\n";
        }
    }
    fmt::print("{}", md.str());
    if (!out_file.empty()) std::ofstream(out_file) << md.str();
    if (!json_file.empty()) {
        char date[64];
        const std::time_t now = std::time(nullptr);
        std::strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", std::gmtime(&now));
        nlohmann::json peaks;
        for (const auto& t : threads) peaks[t] = peak[t];
        nlohmann::json host_reference;
        for (const auto& t : threads) host_reference[t] = {{"gflops", reference[t].first}, {"gbps", reference[t].second}};
        nlohmann::json host_checks = nlohmann::json::array();
        for (const auto& a : attempts)
            host_checks.push_back({{"threads", a.t}, {"round", a.round}, {"at", a.when}, {"start_gflops", a.start},
                                   {"end_gflops", a.end}, {"start_gbps", a.mstart}, {"end_gbps", a.mend},
                                   {"score", a.score}, {"kept", a.kept}});
        nlohmann::json cj = nlohmann::json::object();
        for (const auto& [w, c] : checks) cj[w] = {{"ok", c.ok}, {"result", c.j}, {"error", c.error}};
        std::ofstream(json_file) << nlohmann::json{{"date", date},
                                                   {"machine", machine},
                                                   {"rounds", rounds},
                                                   {"quick", quick},
                                                   {"torch_configs", torch_mode},
                                                   {"peak_gflops", peaks},
                                                   {"host_reference", host_reference},
                                                   {"host_checks", host_checks},
                                                   {"checks", cj},
                                                   {"rows", rows},
                                                   {"baseline", baseline_file},
                                                   {"regressions", regressions}}
                                        .dump(1)
                                 << "\n";
    }
    return 0;
}
