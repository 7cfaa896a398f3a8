// Runs every (workload, threads, implementation) in its own process, in rounds with the peers
// interleaved, and prints markdown tables with ratios from the same run: one for the first-order
// workloads, one for the second-order ones (hvp_*, double_backprop_mlp: tape and libtorch, each also
// with the first-order gradient of the same network). Before timing, the sequence workloads
// (lstm_step, gru_step, attention_step) are checked: libtorch's initial weights are loaded into xgrad's
// model by state-dict name and both sides' loss and gradients compared on the same data
// (seq_workloads.hpp); their ratios are printed only when the two agree.
//   bench_run [--threads 1,2] [--rounds 2] [--workloads mnist_softmax_sgd,mlp_b64,...] [--quick] [--out FILE]
//             [--base-bin-dir DIR]   (DIR/bench_xgrad: a second build's tape, e.g. an older commit, timed beside this one)
#include <CLI/CLI.hpp>
#include <fmt/core.h>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "seq_workloads.hpp"

namespace {

struct Result {
    double median = 0;  // mean over rounds of the per-round medians
    double spread = 0;  // (max − min) / min over rounds
    double peak = 0, base = 0, allocs = 0, dnnl_allocs = 0, gflops = 0;
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

std::string fmt_val(const Result& r, const std::string& unit)
{
    if (!r.ok) return "–";
    std::string s = unit == "ns/op" ? fmt::format("{:.0f} ns/op", r.median) : fmt::format("{:.3g} ms", r.median);
    if (r.gflops > 0) s += fmt::format(" ({:.0f} GF/s)", r.gflops);
    if (r.spread > 0.10) s += " ⚠";
    return s;
}

// Sequence workloads: checked against libtorch before timing; no hand-written step.
bool sequence(const std::string& w) { return w == "lstm_step" || w == "gru_step" || w == "attention_step"; }

// Workloads without a hand-written step: tape_* (bookkeeping only), the normalization networks but
// bn_conv, the sequence workloads.
bool has_hand(const std::string& w)
{
    return w.rfind("tape_", 0) != 0 && w != "resnet_b64" && w != "layernorm_mlp" && !sequence(w);
}

/// The agreement check of one sequence workload: bench_torch dumps its weights, input, loss and
/// gradients under `dir`, bench_xgrad loads them and prints the differences (seq_workloads.hpp).
struct Check {
    bool ok = false;
    nlohmann::json j;   // bench_xgrad check's line (null if it printed none)
    std::string error;  // the first line either program wrote to stderr, when one failed
};

Check run_check(const std::string& bin_dir, const std::string& dir, const std::string& w)
{
    Check c;
    const std::string prefix = dir + "/" + w, err = prefix + ".err";
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
    for (const char* suffix : {".weights.safetensors", ".ref.safetensors", ".err"}) std::remove((prefix + suffix).c_str());
    return c;
}

bool second_order(const std::string& w) { return w.rfind("hvp_", 0) == 0 || w.rfind("double_backprop_", 0) == 0; }

}  // namespace

int main(int argc, char** argv)
{
    CLI::App app{"xgrad benchmarks side by side with libtorch and hand-written backprop"};
    std::string threads_s = "1,2", workloads_s =
        "mnist_softmax_sgd,mlp_b64,mlp_b256,lenet,resnet_b64,bn_conv,layernorm_mlp,lstm_step,gru_step,attention_step,tape_1,"
        "tape_64x64,mm_512,mm_1024,hvp_mlp,hvp_lenet,double_backprop_mlp";
    int rounds = 2;
    bool quick = false;
    std::string out_file, bin_dir = ".", base_dir;
    app.add_option("--threads", threads_s, "thread settings, comma separated")->capture_default_str();
    app.add_option("--workloads", workloads_s, "workloads, comma separated")->capture_default_str();
    app.add_option("--rounds", rounds, "rounds of every configuration")->capture_default_str();
    app.add_flag("--quick", quick, "short timing (smoke test; figures not for reporting)");
    app.add_option("--out", out_file, "also write the table to this file");
    app.add_option("--bin-dir", bin_dir, "directory of bench_xgrad and bench_torch")->capture_default_str();
    app.add_option("--base-bin-dir", base_dir,
                   "directory of a second build's bench_xgrad (e.g. an older commit): its tape is timed beside this one's");
    CLI11_PARSE(app, argc, argv);
    if (quick) setenv("XGRAD_BENCH_QUICK", "1", 1);

    const bool have_torch = std::ifstream(bin_dir + "/bench_torch").good();
    if (!have_torch) fmt::print(stderr, "note: bench_torch not built (libtorch not found): no libtorch column\n");
    const auto threads = split(threads_s), workloads = split(workloads_s);
    // results[workload][threads][impl] = per-round JSON
    std::map<std::string, std::map<std::string, std::map<std::string, std::vector<nlohmann::json>>>> raw;
    // The sequence workloads' agreement with libtorch, before any timing.
    std::map<std::string, Check> checks;
    std::vector<std::string> checked;  // in the order asked for
    if (have_torch) {
        char dir_template[] = "/tmp/xgrad_bench_check_XXXXXX";
        if (const char* dir = mkdtemp(dir_template)) {
            for (const auto& w : workloads)
                if (sequence(w)) {
                    fmt::print(stderr, "\rcheck {:<16}", w);
                    checks[w] = run_check(bin_dir, dir, w);
                    checked.push_back(w);
                }
            rmdir(dir);
        }
    }
    for (int round = 1; round <= rounds; ++round)
        for (const auto& t : threads)
            for (const auto& w : workloads) {
                std::vector<std::pair<std::string, std::string>> cmds;
                if (have_torch) cmds.emplace_back("libtorch", bin_dir + "/bench_torch " + w + " " + t);
                cmds.emplace_back("tape", bin_dir + "/bench_xgrad tape " + w + " " + t);
                if (!base_dir.empty()) cmds.emplace_back("base", base_dir + "/bench_xgrad tape " + w + " " + t);
                if (second_order(w)) {  // the first-order gradient of the same network, both sides
                    cmds.emplace_back("grad", bin_dir + "/bench_xgrad grad " + w + " " + t);
                    if (have_torch) cmds.emplace_back("libtorch_grad", bin_dir + "/bench_torch " + w + " " + t + " grad");
                } else if (has_hand(w)) {
                    cmds.emplace_back("hand", bin_dir + "/bench_xgrad hand " + w + " " + t);
                }
                if (w.rfind("mm_", 0) == 0) {
                    cmds.emplace_back("blas", bin_dir + "/bench_xgrad blas gemm_" + w.substr(3) + " " + t);
                    cmds.emplace_back("sgemm", bin_dir + "/bench_xgrad sgemm gemm_" + w.substr(3) + " " + t);
                }
                for (const auto& [impl, cmd] : cmds) {
                    fmt::print(stderr, "\rround {}/{}  T{}  {:<12} {:<8}", round, rounds, t, w, impl);
                    raw[w][t][impl].push_back(run_one(cmd));
                }
            }
    fmt::print(stderr, "\r{}\r", std::string(60, ' '));

    auto summarize = [&](const std::vector<nlohmann::json>& runs) {
        Result r;
        double lo = 1e300, hi = 0;
        int n = 0;
        for (const auto& j : runs) {
            if (j.is_null()) continue;
            const double m = j["median"].get<double>();
            r.median += m, lo = std::min(lo, m), hi = std::max(hi, m), ++n;
            r.peak = std::max(r.peak, j["peak_mib"].get<double>());
            r.base = j["base_mib"].get<double>();
            r.allocs = j["allocs_per_rep"].get<double>();
            r.dnnl_allocs = j.value("dnnl_allocs_per_rep", 0.0);
            if (j.contains("gflops")) r.gflops += j["gflops"].get<double>();
        }
        if (n) {
            r.ok = true;
            r.median /= n;
            r.gflops /= n;
            r.spread = (hi - lo) / lo;
        }
        return r;
    };

    auto ratio = [](const Result& a, const Result& b) {
        return a.ok && b.ok ? fmt::format("{:.2f}", a.median / b.median) : std::string("–");
    };
    // tape / libtorch of a sequence workload only once its check has passed
    auto ratio_lt = [&](const std::string& w, const Result& tp, const Result& lt) {
        if (sequence(w) && have_torch && !checks[w].ok) return std::string("– (check failed)");
        return ratio(tp, lt);
    };
    auto memory = [](const Result& lt, const Result& tp) {
        const std::string tape = tp.ok ? fmt::format("{:.0f} ({:+.0f})", tp.peak, tp.peak - tp.base) : std::string("–");
        return lt.ok ? fmt::format("{:.0f} ({:+.0f}) → {}", lt.peak, lt.peak - lt.base, tape) : tape;
    };
    std::vector<std::string> first, second;
    for (const auto& w : workloads) (second_order(w) ? second : first).push_back(w);
    const bool with_base = !base_dir.empty();
    std::ostringstream md;
    if (!checks.empty()) {
        md << "| workload | loss libtorch | loss xgrad | loss rel. diff | max grad rel. diff (parameter) | agree (≤ "
           << fmt::format("{:g}", xgrad::bench::seq::check_tolerance) << ") |\n";
        md << "|---|---|---|---|---|---|\n";
        for (const auto& w : checked) {
            const Check& c = checks[w];
            if (c.j.is_null()) {
                md << fmt::format("| {} | – | – | – | – | **no**: {} |\n", w, c.error);
                continue;
            }
            md << fmt::format("| {} | {:.6f} | {:.6f} | {:.2g} | {:.2g} ({}) | {} |\n", w, c.j["loss_libtorch"].get<double>(),
                              c.j["loss_xgrad"].get<double>(), c.j["loss_rel"].get<double>(),
                              c.j["grad_max_rel"].get<double>(), c.j["worst"].get<std::string>(),
                              c.ok ? "yes" : "**no**");
        }
        md << "\nSequence workloads: libtorch's initial weights loaded into xgrad by state-dict name, same data, one forward + "
              "backward; relative difference per tensor = max |xgrad − libtorch| / max |libtorch|.\n\n";
    }
    if (!first.empty()) {
    md << "| workload | threads | libtorch | xgrad tape | hand-written | tape / libtorch | tape / hand | peak RSS MiB libtorch → tape (workload part) | allocs per step: libtorch / tape (+ inside dnnl_sgemm) |"
       << (with_base ? " tape, base build | tape / base build |\n" : "\n");
    md << "|---|---|---|---|---|---|---|---|---|" << (with_base ? "---|---|\n" : "\n");
    for (const auto& w : first)
        for (const auto& t : threads) {
            auto& m = raw[w][t];
            const Result lt = summarize(m["libtorch"]), tp = summarize(m["tape"]), hd = summarize(m["hand"]),
                         bl = summarize(m["blas"]), sg = summarize(m["sgemm"]), bs = summarize(m["base"]);
            const std::string unit = w.rfind("tape_", 0) == 0 ? "ns/op" : "ms";
            std::string hand_col = fmt_val(hd, unit), vs_hand = ratio(tp, hd);
            if (bl.ok && sg.ok) {  // matmul: the plain GEMM rates beside the hand column
                hand_col += fmt::format("; plain cblas_sgemm {:.0f} GF/s, xgrad's sgemm {:.0f} GF/s", bl.gflops, sg.gflops);
                vs_hand += fmt::format(" ({:.0f}% of cblas_sgemm, {:.0f}% of xgrad's sgemm)", 100 * tp.gflops / bl.gflops,
                                       100 * tp.gflops / sg.gflops);
            }
            md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} |", w, t, fmt_val(lt, unit), fmt_val(tp, unit),
                              hand_col, ratio_lt(w, tp, lt), vs_hand, memory(lt, tp),
                              fmt::format("{:.0f} / {:.0f} (+{:.0f})", lt.allocs, tp.allocs, tp.dnnl_allocs));
            if (with_base) md << fmt::format(" {} | {} |", fmt_val(bs, unit), ratio(tp, bs));
            md << "\n";
        }
    }
    if (!second.empty()) {
        if (!first.empty()) md << "\n";
        md << "| workload | threads | libtorch | xgrad tape | tape / libtorch | tape gradient (same network) | tape / tape gradient | "
              "libtorch gradient | libtorch / libtorch gradient | peak RSS MiB libtorch → tape (workload part) | allocs per "
              "step: libtorch / tape (+ inside dnnl_sgemm) |"
           << (with_base ? " tape, base build | tape / base build |\n" : "\n");
        md << "|---|---|---|---|---|---|---|---|---|---|---|" << (with_base ? "---|---|\n" : "\n");
        for (const auto& w : second)
            for (const auto& t : threads) {
                auto& m = raw[w][t];
                const Result lt = summarize(m["libtorch"]), tp = summarize(m["tape"]), gr = summarize(m["grad"]),
                             lg = summarize(m["libtorch_grad"]), bs = summarize(m["base"]);
                md << fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |", w, t, fmt_val(lt, "ms"),
                                  fmt_val(tp, "ms"), ratio(tp, lt), fmt_val(gr, "ms"), ratio(tp, gr), fmt_val(lg, "ms"),
                                  ratio(lt, lg), memory(lt, tp),
                                  fmt::format("{:.0f} / {:.0f} (+{:.0f})", lt.allocs, tp.allocs, tp.dnnl_allocs));
                if (with_base) md << fmt::format(" {} | {} |", fmt_val(bs, "ms"), ratio(tp, bs));
                md << "\n";
            }
    }
    md << fmt::format("\nmedians of {} round(s), each process timed per docs/benchmarks.md; ⚠ = rounds differ by more than 10%.\n",
                      rounds);
    fmt::print("{}", md.str());
    if (!out_file.empty()) std::ofstream(out_file) << md.str();
    return 0;
}
