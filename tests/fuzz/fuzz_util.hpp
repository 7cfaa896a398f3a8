#pragma once
// Shared by the libFuzzer harnesses: a private temp directory, whole-file writes, and the
// --make-corpus mode (LLVMFuzzerInitialize runs before libFuzzer parses its flags).
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

namespace xgrad::fuzz {

/// A directory of this process's own, removed at exit.
inline const std::string& temp_dir()
{
    // Never destroyed: the atexit handler below runs after static destructors registered later.
    static const std::string& dir = *[] {
        // tmpfs when there is one: every input is written to a file, and a disk journal is slow
        const std::filesystem::path base =
            std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
        auto* t = new std::string((base / "xgrad_fuzz_XXXXXX").string());
        if (!::mkdtemp(t->data())) {
            std::perror("mkdtemp");
            std::abort();
        }
        return t;
    }();
    static const bool cleanup = [] {
        std::atexit([] {
            std::error_code ec;
            std::filesystem::remove_all(dir, ec);
        });
        return true;
    }();
    (void)cleanup;
    return dir;
}

inline void write_file(const std::string& path, const void* data, std::size_t size)
{
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(static_cast<const char*>(data), std::streamsize(size));
    if (!out) {
        std::fprintf(stderr, "fuzz harness: cannot write %s\n", path.c_str());
        std::abort();
    }
}

inline std::string read_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

/// Handles `--make-corpus DIR` (writes the seed corpus with `make`, then exits); other arguments
/// are left to libFuzzer.
inline void maybe_make_corpus(int* argc, char*** argv, const std::function<void(const std::string&)>& make)
{
    for (int i = 1; i + 1 < *argc; ++i)
        if (std::strcmp((*argv)[i], "--make-corpus") == 0) {
            std::filesystem::create_directories((*argv)[i + 1]);
            make((*argv)[i + 1]);
            std::exit(0);
        }
}

/// Stops the fuzzer with a message: a wrong result, not a crash libFuzzer would notice by itself.
[[noreturn]] inline void fail(const std::string& what)
{
    std::fprintf(stderr, "\n*** xgrad fuzz: %s\n", what.c_str());
    std::fflush(stderr);
    __builtin_trap();
}

}  // namespace xgrad::fuzz
