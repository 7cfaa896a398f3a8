#pragma once
// What bench_xgrad and bench_torch share (no xgrad or libtorch header: both include it): the
// sequence workloads' sizes and token data (docs/benchmarks.md §m–o; one generator, so both sides
// train on the same sequences), and the files of the agreement check every workload goes through.
//
// The check (bench_run runs it before timing, docs/benchmarks.md §o): `bench_torch W 1 dump PREFIX`
// writes libtorch's freshly initialized parameters under their state-dict names (or the workload's own
// names where there is no module: b0, W1, b1; A, B; x0, w) to PREFIX.weights.safetensors, the data to
// PREFIX.input.safetensors ("input.<name>"), and the loss and every parameter's gradient ("grad.<name>",
// for hvp_* the Hessian-vector product) after one run of the timed step to PREFIX.ref.safetensors; `bench_xgrad check
// W 1 PREFIX` loads the weights and data by name (names and shapes must match exactly), runs its timed
// step once and prints one JSON line with the relative differences. The timed processes of both sides
// load the same files (bench_xgrad) or make the same ones again (bench_torch, fixed seed), so the loss
// of their first step must agree as well.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

namespace xgrad::bench {

/// Relative tolerance of the check: per tensor, max |xgrad − libtorch| / max |libtorch| (the loss:
/// |Δ| / |loss|). Float32 on both sides.
constexpr double check_tolerance = 1e-4;

}  // namespace xgrad::bench

namespace xgrad::bench::seq {

// lstm_step, gru_step: tokens → Embedding(V, E) → LSTM/GRU(E, H, 2 layers) → Linear(H, V) → CE over all L·B positions.
constexpr std::size_t V = 100, E = 64, H = 256, LAYERS = 2, L = 64, B = 32;
// attention_step: one pre-LayerNorm block, width D, NH heads, causal, GELU MLP of width 4·D, on x (BA, LA, D).
constexpr std::size_t D = 128, NH = 4, LA = 128, BA = 16, FF = 4 * D;

/// Tokens of a sequence of L + 1 steps, time-major: tok[t·B + b] ∈ [0, V), from a fixed 64-bit LCG.
/// The model reads steps 0 … L − 1 and predicts steps 1 … L (next-token targets).
inline std::vector<std::int64_t> tokens()
{
    std::vector<std::int64_t> tok((L + 1) * B);
    std::uint64_t s = 0x9E3779B97F4A7C15ull;
    for (auto& t : tok) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        t = std::int64_t((s >> 33) % V);
    }
    return tok;
}

/// A float32 safetensors file (8-byte little-endian header length, JSON header, raw data): what
/// bench_torch's dump writes and nn::load_weights / nn::load_tensors read.
struct SafetensorsWriter {
    struct Entry {
        std::string name;
        std::vector<std::int64_t> shape;
        std::vector<float> data;
    };
    std::vector<Entry> entries;
    void add(std::string name, std::vector<std::int64_t> shape, const float* p, std::size_t n)
    {
        entries.push_back({std::move(name), std::move(shape), std::vector<float>(p, p + n)});
    }
    bool write(const std::string& path) const
    {
        std::string h = "{";
        std::size_t off = 0;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const Entry& e = entries[i];
            h += (i ? ",\"" : "\"") + e.name + "\":{\"dtype\":\"F32\",\"shape\":[";
            for (std::size_t d = 0; d < e.shape.size(); ++d) h += (d ? "," : "") + std::to_string(e.shape[d]);
            const std::size_t end = off + 4 * e.data.size();
            h += "],\"data_offsets\":[" + std::to_string(off) + "," + std::to_string(end) + "]}";
            off = end;
        }
        h += "}";
        while ((h.size() + 8) % 8) h += ' ';  // data aligned to 8 bytes, as the format recommends
        std::FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) return false;
        unsigned char len[8];
        for (int i = 0; i < 8; ++i) len[i] = (unsigned char)((std::uint64_t(h.size()) >> (8 * i)) & 0xff);
        bool ok = std::fwrite(len, 1, 8, f) == 8 && std::fwrite(h.data(), 1, h.size(), f) == h.size();
        for (const Entry& e : entries)
            ok = ok && std::fwrite(e.data.data(), sizeof(float), e.data.size(), f) == e.data.size();
        return std::fclose(f) == 0 && ok;
    }
};

}  // namespace xgrad::bench::seq
