// The benchmark runner's agreement check (docs/benchmarks.md §o) on three cheap workloads: runs
// `bench_run --check-only` and asserts, per workload, that xgrad's loss and every parameter gradient
// after one step on libtorch's weights and data are within check_tolerance of libtorch's. Built only
// when libtorch is found (bench_torch exists).
//   test_bench_agreement <dir of bench_run, bench_xgrad, bench_torch>
#define BOOST_TEST_MODULE bench_agreement
#include <boost/test/unit_test.hpp>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "seq_workloads.hpp"

BOOST_AUTO_TEST_CASE(xgrad_and_libtorch_agree_on_the_same_weights_and_data)
{
    const auto& args = boost::unit_test::framework::master_test_suite();
    BOOST_REQUIRE_MESSAGE(args.argc == 2, "usage: test_bench_agreement BIN_DIR");
    const std::string bin = args.argv[1];
    char tmpl[] = "/tmp/xgrad_bench_agreement_XXXXXX";
    const int fd = mkstemp(tmpl);
    BOOST_REQUIRE(fd >= 0);
    close(fd);
    const std::string json = tmpl;
    const std::string workloads = "mnist_softmax_sgd,mlp_b64,mm_512";
    const int rc = std::system((bin + "/bench_run --check-only --bin-dir " + bin + " --workloads " + workloads + " --json " +
                                json + " > /dev/null")
                                   .c_str());
    nlohmann::json j;
    std::ifstream f(json);
    BOOST_REQUIRE_MESSAGE(f.good(), "bench_run wrote no JSON");
    f >> j;
    std::remove(json.c_str());
    BOOST_TEST(rc == 0);
    BOOST_REQUIRE_EQUAL(j["checks"].size(), 3u);
    for (const auto& c : j["checks"]) {
        BOOST_TEST_CONTEXT(c["workload"].get<std::string>() + ": " + c["error"].get<std::string>())
        {
            BOOST_REQUIRE(c["result"].is_object());
            const auto& r = c["result"];
            BOOST_TEST(r["parameters"].get<int>() > 0);
            BOOST_TEST(r["loss_rel"].get<double>() <= xgrad::bench::check_tolerance);
            BOOST_TEST(r["grad_max_rel"].get<double>() <= xgrad::bench::check_tolerance);
            // Both sides computed a loss of the same size (not, e.g., two zeros).
            BOOST_TEST(std::abs(r["loss_libtorch"].get<double>()) > 0);
            BOOST_TEST(c["ok"].get<bool>());
        }
    }
}
