// safetensors reader/writer: https://github.com/huggingface/safetensors (format section).
#include "xgrad/nn/serialize.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

namespace xgrad::nn {

namespace {

template <class T>
constexpr const char* dtype_name()
{
    return sizeof(T) == 4 ? "F32" : "F64";
}

std::string errno_str() { return std::strerror(errno); }

/// Writes `bytes` to `path` via a temp file in the same directory and rename(2).
void write_atomically(const std::string& path, const std::string& bytes)
{
    std::string tmpl = path + ".tmp.XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    const int fd = ::mkstemp(name.data());
    if (fd < 0) throw WeightFileError("save_weights: cannot create a temporary file next to '" + path + "': " + errno_str());
    const std::string tmp(name.data());
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd, bytes.data() + done, bytes.size() - done);
        if (w < 0) {
            const std::string why = errno_str();
            ::close(fd);
            ::unlink(tmp.c_str());
            throw WeightFileError("save_weights: writing '" + tmp + "' failed: " + why + " ('" + path + "' is unchanged)");
        }
        done += std::size_t(w);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        const std::string why = errno_str();
        ::unlink(tmp.c_str());
        throw WeightFileError("save_weights: flushing '" + tmp + "' failed: " + why + " ('" + path + "' is unchanged)");
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = errno_str();
        ::unlink(tmp.c_str());
        throw WeightFileError("save_weights: renaming '" + tmp + "' to '" + path + "' failed: " + why);
    }
}

}  // namespace

template <class T>
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor<T>*>>& tensors,
                  const std::map<std::string, std::string>& metadata)
{
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    nlohmann::ordered_json header;
    nlohmann::ordered_json meta = {{"format", "pt"}, {"writer", "xgrad"}};
    for (const auto& [k, v] : metadata) meta[k] = v;
    header["__metadata__"] = meta;
    std::size_t offset = 0;
    for (const auto& [name, t] : tensors) {
        const std::size_t bytes = t->size() * sizeof(T);
        std::vector<std::size_t> shape(t->shape().begin(), t->shape().end());
        header[name] = {{"dtype", dtype_name<T>()}, {"shape", shape}, {"data_offsets", {offset, offset + bytes}}};
        offset += bytes;
    }
    std::string h = header.dump();
    h.append((8 - h.size() % 8) % 8, ' ');  // data starts 8-byte aligned
    std::string out;
    out.reserve(8 + h.size() + offset);
    const std::uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) out.push_back(char((n >> (8 * i)) & 0xff));  // little-endian u64
    out += h;
    for (const auto& [name, t] : tensors) out.append(reinterpret_cast<const char*>(t->data()), t->size() * sizeof(T));
    write_atomically(path, out);
}

template <class T>
std::map<std::string, std::string> load_tensors(const std::string& path,
                                                const std::vector<std::pair<std::string, Tensor<T>*>>& tensors)
{
    auto fail = [&](const std::string& why) { return WeightFileError("load_weights: '" + path + "': " + why); };
    std::ifstream in(path, std::ios::binary);
    if (!in) throw fail("cannot open: " + errno_str());
    const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (bytes.size() < 8) throw fail("truncated: " + std::to_string(bytes.size()) + " bytes, no header length");
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(std::uint8_t(bytes[std::size_t(i)])) << (8 * i);
    if (n > bytes.size() - 8)
        throw fail("truncated: header length " + std::to_string(n) + " exceeds the file (" + std::to_string(bytes.size()) +
                   " bytes)");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(bytes.begin() + 8, bytes.begin() + 8 + std::ptrdiff_t(n));
    } catch (const nlohmann::json::exception& e) {
        throw fail(std::string("not a safetensors file: header is not valid JSON (") + e.what() + ")");
    }
    if (!header.is_object()) throw fail("not a safetensors file: header is not a JSON object");
    const std::size_t data_size = bytes.size() - 8 - std::size_t(n);
    const char* data = bytes.data() + 8 + n;

    std::vector<std::string> problems;
    std::vector<std::pair<Tensor<T>*, std::size_t>> plan;  // (tensor, byte offset)
    std::map<std::string, bool> expected;
    for (const auto& [name, t] : tensors) {
        expected[name] = true;
        if (!header.contains(name)) {
            problems.push_back("missing '" + name + "' " + shape_str(t->shape()));
            continue;
        }
        const nlohmann::json& e = header.at(name);
        try {
            const std::string dtype = e.at("dtype").get<std::string>();
            const auto shape = e.at("shape").get<std::vector<std::size_t>>();
            const auto off = e.at("data_offsets").get<std::vector<std::size_t>>();
            if (dtype != dtype_name<T>()) {
                problems.push_back("'" + name + "' has dtype " + dtype + ", the module wants " + dtype_name<T>());
                continue;
            }
            if (!std::equal(shape.begin(), shape.end(), t->shape().begin(), t->shape().end())) {
                problems.push_back("'" + name + "' has shape " + shape_str(shape) + ", the module wants " +
                                   shape_str(t->shape()));
                continue;
            }
            if (off.size() != 2 || off[1] < off[0] || off[1] - off[0] != t->size() * sizeof(T) || off[1] > data_size) {
                problems.push_back("'" + name + "' data offsets do not fit " + std::to_string(t->size()) +
                                   " values in the " + std::to_string(data_size) + " data bytes (truncated file?)");
                continue;
            }
            plan.emplace_back(t, off[0]);
        } catch (const nlohmann::json::exception& ex) {
            problems.push_back("'" + name + "' has a malformed entry (" + std::string(ex.what()) + ")");
        }
    }
    for (const auto& [key, value] : header.items())
        if (key != "__metadata__" && !expected.count(key)) problems.push_back("unexpected '" + key + "' in the file");
    if (!problems.empty()) {
        std::string msg = "does not match the module:";
        for (const auto& p : problems) msg += "\n  " + p;
        throw fail(msg);
    }
    for (const auto& [t, off] : plan) std::memcpy(t->data(), data + off, t->size() * sizeof(T));
    std::map<std::string, std::string> meta;
    if (header.contains("__metadata__") && header["__metadata__"].is_object())
        for (auto it = header["__metadata__"].begin(); it != header["__metadata__"].end(); ++it)
            if (it->is_string()) meta[it.key()] = it->template get<std::string>();
    return meta;
}

template <class T>
void save_weights(Module<T>& module, const std::string& path)
{
    std::vector<std::pair<std::string, const Tensor<T>*>> ts;
    for (const auto& [name, p] : module.named_parameters()) ts.emplace_back(name, &p->value());
    save_tensors(path, ts);
}

template <class T>
void load_weights(Module<T>& module, const std::string& path)
{
    std::vector<std::pair<std::string, Tensor<T>*>> ts;
    for (const auto& [name, p] : module.named_parameters()) ts.emplace_back(name, &p->value());
    load_tensors(path, ts);
}

template <class T>
void save_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer,
                     const std::map<std::string, std::string>& metadata)
{
    std::vector<std::pair<std::string, const Tensor<T>*>> ts;
    for (const auto& [name, p] : module.named_parameters()) ts.emplace_back("model." + name, &p->value());
    for (const auto& [name, t] : optimizer.state()) ts.emplace_back("optim." + name, t);
    save_tensors(path, ts, metadata);
}

template <class T>
std::map<std::string, std::string> load_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer)
{
    std::vector<std::pair<std::string, Tensor<T>*>> ts;
    for (const auto& [name, p] : module.named_parameters()) ts.emplace_back("model." + name, &p->value());
    for (const auto& [name, t] : optimizer.state()) ts.emplace_back("optim." + name, t);
    return load_tensors(path, ts);
}

#define XGRAD_INSTANTIATE(T)                                                                                     \
    template void save_tensors(const std::string&, const std::vector<std::pair<std::string, const Tensor<T>*>>&, \
                               const std::map<std::string, std::string>&);                                      \
    template std::map<std::string, std::string> load_tensors(const std::string&,                                 \
                                                             const std::vector<std::pair<std::string, Tensor<T>*>>&); \
    template void save_checkpoint(const std::string&, Module<T>&, Optimizer<T>&,                                 \
                                  const std::map<std::string, std::string>&);                                    \
    template std::map<std::string, std::string> load_checkpoint(const std::string&, Module<T>&, Optimizer<T>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

template void save_weights(Module<float>&, const std::string&);
template void save_weights(Module<double>&, const std::string&);
template void load_weights(Module<float>&, const std::string&);
template void load_weights(Module<double>&, const std::string&);

}  // namespace xgrad::nn
