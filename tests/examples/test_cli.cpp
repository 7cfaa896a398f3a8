// The examples' command line, run as a user runs it: every bad value is rejected before any data
// is loaded (the data directory given here does not exist, so a value that got through would end
// in a data error instead), with a message that names the flag, the value and the allowed range.
#define BOOST_TEST_MODULE examples_cli
#include <boost/test/unit_test.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <regex>
#include <string>

namespace fs = std::filesystem;

namespace {

struct Run {
    int code = -1;
    std::string output;  // stdout and stderr
};

/// Runs a shell command line, stderr into stdout.
Run run_command(const std::string& command)
{
    const std::string cmd = command + " 2>&1";
    Run r;
    FILE* p = ::popen(cmd.c_str(), "r");
    BOOST_TEST_REQUIRE(p != nullptr);
    std::array<char, 4096> buf{};
    std::size_t n = 0;
    while ((n = std::fread(buf.data(), 1, buf.size(), p)) > 0) r.output.append(buf.data(), n);
    const int status = ::pclose(p);
    r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

Run run(const std::string& program, const std::string& args)
{
    return run_command(std::string(XGRAD_EXAMPLES_BIN) + "/" + program + " " + args);
}

const std::string no_data = " --data-dir /nonexistent/xgrad-cli-test --out " +
                            (fs::temp_directory_path() / ("xgrad_cli_" + std::to_string(::getpid()))).string();

/// The program must stop with a non-zero exit before loading data, saying every part.
void expect_rejected(const std::string& program, const std::string& args, std::initializer_list<std::string> parts)
{
    BOOST_TEST_CONTEXT(program << " " << args)
    {
        const Run r = run(program, args + no_data);
        BOOST_TEST(r.code != 0);
        for (const auto& p : parts) BOOST_TEST(r.output.find(p) != std::string::npos, "'" << p << "' not in: " << r.output);
        BOOST_TEST(r.output.find("nonexistent") == std::string::npos, "data was looked for: " << r.output);
        // Row 14: bounds are short and readable (no 300-digit DBL_MAX).
        BOOST_TEST(!std::regex_search(r.output, std::regex("[0-9]{30}")), r.output);
        BOOST_TEST(r.output.size() < 400u, r.output);
    }
}

}  // namespace

// Rows 12 and 14: learning rate, epochs, batch size.
BOOST_AUTO_TEST_CASE(bad_training_values_are_rejected_before_loading_data)
{
    expect_rejected("mnist_mlp", "--lr nan", {"--lr", "nan", "(0, 1000]"});
    expect_rejected("mnist_mlp", "--lr inf", {"--lr", "inf", "(0, 1000]"});
    expect_rejected("mnist_mlp", "--lr -1", {"--lr", "-1", "(0, 1000]"});
    expect_rejected("mnist_mlp", "--lr 0", {"--lr", "0 is outside"});
    expect_rejected("mnist_mlp", "--lr 1e5x", {"--lr", "'1e5x' is not a number"});
    expect_rejected("mnist_mlp", "--epochs -3", {"--epochs", "-3", "[1, 100000]"});
    expect_rejected("mnist_mlp", "--epochs 2.5", {"--epochs", "'2.5' is not an integer"});
    expect_rejected("mnist_mlp", "--batch-size 0", {"--batch-size", "0", "[1, 1048576]"});
    expect_rejected("mnist_mlp", "--batch-size -5", {"--batch-size", "-5"});
    expect_rejected("mnist_mlp", "--seed -1", {"--seed", "-1"});
    expect_rejected("mnist_mlp", "--stop-at-accuracy 101", {"--stop-at-accuracy", "101", "[0, 100]"});
    expect_rejected("mnist_mlp", "--stop-at-accuracy nan", {"--stop-at-accuracy", "nan"});
    expect_rejected("mnist_mlp", "--train-limit 99999999999999999999", {"--train-limit", "outside the allowed range"});
    expect_rejected("mnist_trace_reg", "--lr nan", {"--lr", "nan"});
    expect_rejected("mnist_resnet", "--lr -1", {"--lr", "-1", "(0, 1000]"});
    expect_rejected("mnist_resnet", "--optimizer lamb", {"--optimizer", "lamb"});
    expect_rejected("mnist_resnet", "--shift 9", {"--shift", "9 is outside the allowed range [0, 8]"});
    expect_rejected("mnist_resnet", "--shift -1", {"--shift", "-1"});
    expect_rejected("mnist_layernorm_mlp", "--dropout 1", {"--dropout", "1 is outside", "[0, 1)"});
    expect_rejected("mnist_layernorm_mlp", "--dropout nan", {"--dropout", "nan"});
    for (const char* program : {"mnist_resnet", "mnist_layernorm_mlp"}) {  // good values fail only at the data
        const Run r = run(program, no_data.substr(1));
        BOOST_TEST(r.code == 1, program << ": " << r.output);
        BOOST_TEST(r.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, program << ": " << r.output);
    }
    for (const char* flag : {"--channels-last", "--no-channels-last"}) {  // flags: accepted, fail at the data
        const Run cl = run("mnist_resnet", flag + no_data);
        BOOST_TEST(cl.code == 1, flag << ": " << cl.output);
        BOOST_TEST(cl.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, flag << ": " << cl.output);
    }
}

// The second-order examples: their own options, and the shared ones, checked the same way.
BOOST_AUTO_TEST_CASE(second_order_example_values_are_rejected_before_loading_data)
{
    expect_rejected("mnist_double_backprop", "--lambda -1", {"--lambda", "-1", "[0, 1e+06]"});
    expect_rejected("mnist_double_backprop", "--lambda nan", {"--lambda", "nan"});
    expect_rejected("mnist_double_backprop", "--epsilon 0", {"--epsilon", "0 is outside", "(0, 1]"});
    expect_rejected("mnist_double_backprop", "--epsilon 1.5", {"--epsilon", "1.5", "(0, 1]"});
    expect_rejected("mnist_double_backprop", "--hidden 0", {"--hidden", "0", "[1, 65536]"});
    expect_rejected("mnist_double_backprop", "--lr inf", {"--lr", "inf"});
    expect_rejected("mnist_double_backprop", "--resume", {"--resume", "no checkpoints"});
    expect_rejected("hessian_spectrum", "--top 0", {"--top", "0", "[1, 50]"});
    expect_rejected("hessian_spectrum", "--lanczos-steps 1", {"--lanczos-steps", "1", "[2, 1000]"});
    expect_rejected("hessian_spectrum", "--top 10 --lanczos-steps 5", {"--lanczos-steps 5", "at least --top 10"});
    expect_rejected("hessian_spectrum", "--hessian-batch 0", {"--hessian-batch", "0", "[1, 60000]"});
    expect_rejected("hessian_spectrum", "--hessian-batch 1e3", {"--hessian-batch", "'1e3' is not an integer"});
    expect_rejected("hessian_spectrum", "--epochs 0", {"--epochs", "0", "[1, 100000]"});
    expect_rejected("newton_cg", "--seconds 0", {"--seconds", "0 is outside", "(0, 86400]"});
    expect_rejected("newton_cg", "--seconds nan", {"--seconds", "nan"});
    expect_rejected("newton_cg", "--cg-iters 0", {"--cg-iters", "0", "[1, 1000]"});
    expect_rejected("newton_cg", "--adam-lr -0.1", {"--adam-lr", "-0.1", "(0, 1000]"});
    expect_rejected("newton_cg", "--l2 -1", {"--l2", "-1", "[0, 1000]"});
    expect_rejected("newton_cg", "--damping inf", {"--damping", "inf"});
    expect_rejected("newton_cg", "--hessian-batch -5", {"--hessian-batch", "-5"});
    // Good values pass and fail only at the data, naming where they looked.
    for (const char* program : {"newton_cg"}) {
        const Run r = run(program, no_data.substr(1));
        BOOST_TEST(r.code == 1, program << ": " << r.output);
        BOOST_TEST(r.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, program << ": " << r.output);
    }
}

// char_lm: its own options, checked before the fortunes are read.
BOOST_AUTO_TEST_CASE(char_lm_values_are_rejected_before_loading_data)
{
    expect_rejected("char_lm", "--model rnn", {"--model", "rnn"});
    expect_rejected("char_lm", "--model", {"--model"});
    expect_rejected("char_lm", "--seq-len 0", {"--seq-len", "0", "[1, 4096]"});
    expect_rejected("char_lm", "--seq-len 12.5", {"--seq-len", "'12.5' is not an integer"});
    expect_rejected("char_lm", "--steps-per-epoch -1", {"--steps-per-epoch", "-1"});
    expect_rejected("char_lm", "--hidden 0", {"--hidden", "0", "[1, 65536]"});
    expect_rejected("char_lm", "--layers 0", {"--layers", "0", "[1, 64]"});
    expect_rejected("char_lm", "--temperature 0", {"--temperature", "0 is outside", "(0, 100]"});
    expect_rejected("char_lm", "--temperature nan", {"--temperature", "nan"});
    expect_rejected("char_lm", "--clip -1", {"--clip", "-1", "[0, 1e+06]"});
    expect_rejected("char_lm", "--bigram-k 0", {"--bigram-k", "0 is outside"});
    expect_rejected("char_lm", "--val-every 1", {"--val-every", "1", "[2, 1000000]"});
    expect_rejected("char_lm", "--dropout 1", {"--dropout", "1 is outside", "[0, 1)"});
    expect_rejected("char_lm", "--lr inf", {"--lr", "inf"});
    expect_rejected("char_lm", "--dataset mnist", {"--dataset"});  // not an option of char_lm
    expect_rejected("char_lm", "--model transformer --embed 130 --heads 4", {"--embed 130", "--heads 4"});
    // Good values pass and fail only at the data, naming where they looked and how to fetch it.
    for (const char* model : {"lstm", "gru", "transformer"}) {
        const Run r = run("char_lm", std::string("--model ") + model + no_data);
        BOOST_TEST(r.code == 1, model << ": " << r.output);
        BOOST_TEST(r.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, model << ": " << r.output);
        BOOST_TEST(r.output.find("scripts/fetch-data fortunes") != std::string::npos, model << ": " << r.output);
    }
}

// Row 6: thread counts outside [1, CPUs].
BOOST_AUTO_TEST_CASE(bad_thread_counts_are_rejected)
{
    const std::string range = "[1, ";
    for (const char* n : {"100000", "0", "-4"})
        expect_rejected("mnist_mlp", std::string("--threads ") + n, {"--threads", n, range});
}

// Row 13: an output directory that cannot be created or written fails at once.
BOOST_AUTO_TEST_CASE(unwritable_out_directory_fails_before_training)
{
    const fs::path base = fs::temp_directory_path() / ("xgrad_cli_out_" + std::to_string(::getpid()));
    fs::create_directories(base);
    std::FILE* f = std::fopen((base / "a_file").c_str(), "w");
    BOOST_TEST_REQUIRE(f != nullptr);
    std::fclose(f);
    for (const fs::path& out : {base / "a_file" / "run", fs::path("/proc/xgrad-no-such-dir/run")}) {
        const Run r = run("mnist_mlp", "--data-dir /nonexistent/xgrad-cli-test --out " + out.string());
        BOOST_TEST(r.code != 0);
        BOOST_TEST(r.output.find("--out") != std::string::npos, r.output);
        BOOST_TEST(r.output.find(out.string()) != std::string::npos, r.output);
        BOOST_TEST(r.output.find("nonexistent") == std::string::npos, "data was looked for: " << r.output);
    }
    // A read-only directory (when not running as root, for whom permissions do not apply).
    if (::geteuid() != 0) {
        const fs::path ro = base / "read_only";
        fs::create_directories(ro);
        fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
        const Run r = run("mnist_mlp", "--data-dir /nonexistent/xgrad-cli-test --out " + ro.string());
        BOOST_TEST(r.code != 0);
        BOOST_TEST(r.output.find("cannot write in the run directory") != std::string::npos, r.output);
        fs::permissions(ro, fs::perms::owner_all);
    }
    // A good directory passes the CLI checks and fails only at the data, naming the path.
    const Run ok = run("mnist_mlp", "--data-dir /nonexistent/xgrad-cli-test --out " + (base / "fine").string());
    BOOST_TEST(ok.code == 1);
    BOOST_TEST(ok.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, ok.output);
    BOOST_TEST(ok.output.find("scripts/fetch-data mnist") != std::string::npos, ok.output);
    fs::remove_all(base);
}

// --distributed: offered by the programs that train through examples/common/train (batch per rank),
// accepted when xgrad has MPI and rejected before any data is loaded when it has not; the programs
// with a training loop of their own do not take it.
BOOST_AUTO_TEST_CASE(distributed_is_accepted_with_mpi_and_rejected_without)
{
    for (const char* program : {"mnist_mlp", "mnist_resnet", "mnist_layernorm_mlp", "mnist_trace_reg", "char_lm",
                                "mnist_double_backprop", "hessian_spectrum"}) {
        const Run help = run(program, "--help");
        BOOST_TEST(help.code == 0, program << ": " << help.output);
        BOOST_TEST(help.output.find("--distributed") != std::string::npos, program << ": " << help.output);
        BOOST_TEST(help.output.find("--batch-size is per rank") != std::string::npos, program << ": " << help.output);
    }
    for (const char* program : {"newton_cg"})
        expect_rejected(program, "--distributed", {"--distributed"});
#ifdef XGRAD_EXAMPLES_HAVE_MPI
    // One rank under mpiexec: the flag passes the CLI checks and the run fails only at the data,
    // naming the rank (run_or_abort), where it looked and how to fetch it.
    for (const char* program : {"mnist_mlp", "mnist_resnet", "char_lm"}) {
        const Run r = run_command(std::string(XGRAD_MPIRUN_LOCAL) + " -n 1 " + XGRAD_EXAMPLES_BIN + "/" + program +
                                  " --distributed" + no_data);
        const std::string fetch = std::string("scripts/fetch-data ") + (program == std::string("char_lm") ? "fortunes" : "mnist");
        BOOST_TEST(r.code != 0, program << ": " << r.output);
        BOOST_TEST(r.output.find("rank 0 of 1 failed") != std::string::npos, program << ": " << r.output);
        BOOST_TEST(r.output.find("/nonexistent/xgrad-cli-test") != std::string::npos, program << ": " << r.output);
        BOOST_TEST(r.output.find(fetch) != std::string::npos, program << ": " << r.output);
    }
#else
    for (const char* program : {"mnist_mlp", "mnist_resnet", "mnist_layernorm_mlp", "mnist_trace_reg", "char_lm",
                                "mnist_double_backprop", "hessian_spectrum"})
        expect_rejected(program, "--distributed", {"--distributed", "built without MPI", "-DXGRAD_WITH_MPI=ON"});
#endif
}
