// safetensors reader/writer: https://github.com/huggingface/safetensors (format section).
#include "xgrad/nn/serialize.hpp"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <vector>

namespace xgrad::nn {

namespace {

template <class T>
constexpr const char* dtype_name()
{
    return sizeof(T) == 4 ? "F32" : "F64";
}

/// Element sizes of the safetensors dtypes, so that any entry's data_offsets can be checked.
std::size_t dtype_size(const std::string& dtype)
{
    static const std::map<std::string, std::size_t> sizes = {
        {"BOOL", 1}, {"U8", 1},  {"I8", 1},   {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
        {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"I64", 8},     {"U64", 8}, {"F64", 8}};
    const auto it = sizes.find(dtype);
    return it == sizes.end() ? 0 : it->second;
}

/// The safetensors reference implementation refuses headers above 100 MB; so do we, before allocating.
constexpr std::uint64_t max_header_bytes = 100'000'000;

std::string errno_str() { return std::strerror(errno); }

/// A JSON value for a message: scalars as written, containers by kind only (dumping them would
/// recurse as deep as a hostile file nests).
std::string json_str(const nlohmann::json& v)
{
    if (v.is_array()) return fmt::format("an array of {}", v.size());
    if (v.is_object()) return "an object";
    // replace: a string cut at 40 bytes may end inside a UTF-8 sequence
    const auto dump = [](const nlohmann::json& j) { return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace); };
    if (v.is_string()) {
        const std::string s = v.get<std::string>();
        return s.size() > 40 ? dump(nlohmann::json(s.substr(0, 40))) + "..." : dump(v);
    }
    return dump(v);
}

/// The process's umask, read without changing it (umask(2) can only read by setting, which races
/// other threads creating files).
mode_t current_umask()
{
    std::ifstream status("/proc/self/status");
    for (std::string line; std::getline(status, line);)
        if (line.rfind("Umask:", 0) == 0) return mode_t(std::strtoul(line.c_str() + 6, nullptr, 8) & 0777);
    const mode_t m = ::umask(022);
    ::umask(m);
    return m;
}

class Fd {
public:
    explicit Fd(int fd) : fd_(fd) {}
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd()
    {
        if (fd_ >= 0) ::close(fd_);
    }
    int get() const { return fd_; }
    /// Closes now and reports close(2)'s result (a delayed write error shows up here).
    int close()
    {
        const int r = ::close(fd_);
        fd_ = -1;
        return r;
    }

private:
    int fd_;
};

/// Writes `bytes` to `path` via a temp file in the same directory, rename(2), then an fsync of the
/// directory so that the rename itself survives a crash: at every moment `path` holds either the
/// old or the new contents.
void write_atomically(const std::string& path, const std::string& bytes, const char* caller)
{
    std::string tmpl = path + ".tmp.XXXXXX";
    std::vector<char> name(tmpl.begin(), tmpl.end());
    name.push_back('\0');
    Fd fd(::mkstemp(name.data()));
    if (fd.get() < 0)
        throw WeightFileError(fmt::format("{}: cannot create a temporary file next to '{}': {}", caller, path, errno_str()));
    const std::string tmp(name.data());
    auto fail = [&](const std::string& what) {
        const std::string why = errno_str();
        ::unlink(tmp.c_str());
        throw WeightFileError(fmt::format("{}: {} '{}' failed: {} ('{}' is unchanged)", caller, what, tmp, why, path));
    };
    // mkstemp creates 0600; a saved file gets the mode any other tool would give it.
    if (::fchmod(fd.get(), 0666 & ~current_umask()) != 0) fail("setting the mode of");
    std::size_t done = 0;
    while (done < bytes.size()) {
        const ssize_t w = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) fail("writing");
        done += std::size_t(w);
    }
    if (::fsync(fd.get()) != 0 || fd.close() != 0) fail("flushing");
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const std::string why = errno_str();
        ::unlink(tmp.c_str());
        throw WeightFileError(fmt::format("{}: renaming '{}' to '{}' failed: {}", caller, tmp, path, why));
    }
    // The rename is only durable once the directory is synced. A directory we may not open for
    // reading cannot be synced by us at all; EINVAL/EROFS: a file system without directory sync.
    const std::filesystem::path parent = std::filesystem::path(path).parent_path();
    Fd dir(::open(parent.empty() ? "." : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dir.get() >= 0 && ::fsync(dir.get()) != 0 && errno != EINVAL && errno != EROFS)
        throw WeightFileError(fmt::format("{}: '{}' was written but syncing its directory failed: {}", caller, path,
                                          errno_str()));
}

template <class T>
void save_tensors_as(const char* caller, const std::string& path,
                     const std::vector<std::pair<std::string, const Tensor<T>*>>& tensors,
                     const std::map<std::string, std::string>& metadata)
{
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    nlohmann::ordered_json header;
    // linear_weight: Linear's weight is stored (out, in), as in PyTorch. Files without it are from
    // before that layout (read_tensors refuses their module weights).
    nlohmann::ordered_json meta = {{"format", "pt"}, {"writer", "xgrad"}, {"linear_weight", "out,in"}};
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
    write_atomically(path, out, caller);
}

/// The values of the wanted tensors, read and checked but not yet copied into them, and the metadata.
template <class T>
struct Staged {
    std::vector<std::vector<T>> values;  // one per wanted tensor, same order
    std::map<std::string, std::string> meta;
};

/// Reads `path` into staging buffers after checking everything a hostile file could get wrong:
/// header length against the file and a 100 MB cap before allocating, every entry's dtype, shape
/// (non-negative integers), data_offsets (inside the data section, exactly shape × dtype bytes),
/// and names, shapes and dtype against `tensors`. Throws WeightFileError naming the path and
/// every problem; touches nothing.
template <class T>
Staged<T> read_tensors(const char* caller, const std::string& path,
                       const std::vector<std::pair<std::string, Tensor<T>*>>& tensors, bool module_weights = false)
{
    auto fail = [&](const std::string& why) { return WeightFileError(fmt::format("{}: '{}': {}", caller, path, why)); };
    Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) throw fail(fmt::format("cannot open: {}", errno_str()));
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) throw fail(fmt::format("cannot stat: {}", errno_str()));
    if (S_ISDIR(st.st_mode)) throw fail("is a directory, not a safetensors file");
    if (!S_ISREG(st.st_mode)) throw fail("not a regular file");
    const std::uint64_t file_size = std::uint64_t(st.st_size);
    auto read_at = [&](void* dst, std::size_t n, std::uint64_t off) {
        auto* p = static_cast<char*>(dst);
        for (std::size_t done = 0; done < n;) {
            const ssize_t r = ::pread(fd.get(), p + done, n - done, off_t(off + done));
            if (r < 0 && errno == EINTR) continue;
            if (r < 0) throw fail(fmt::format("read failed: {}", errno_str()));
            if (r == 0) throw fail(fmt::format("truncated while reading (the file shrank below {} bytes)", off + n));
            done += std::size_t(r);
        }
    };
    if (file_size < 8) throw fail(fmt::format("truncated: {} bytes, no header length", file_size));
    unsigned char len[8];
    read_at(len, 8, 0);
    std::uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n |= std::uint64_t(len[i]) << (8 * i);
    if (n > file_size - 8)
        throw fail(fmt::format("truncated: header length {} exceeds the file ({} bytes)", n, file_size));
    if (n > max_header_bytes)
        throw fail(fmt::format("header length {} is over the safetensors limit of {} bytes", n, max_header_bytes));
    std::string text(std::size_t(n), '\0');
    read_at(text.data(), text.size(), 8);
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
        throw fail(fmt::format("not a safetensors file: header is not valid JSON ({})", e.what()));
    }
    if (!header.is_object()) throw fail("not a safetensors file: header is not a JSON object");
    if (module_weights) {
        // An xgrad file from before Linear stored (out, in) holds its Linear weights (in, out): a
        // square layer would load transposed with no shape error, so such files are refused.
        const auto md = header.find("__metadata__");
        // Metadata values are strings by the format, but a hostile file may hold anything there:
        // look before get (json::value throws type_error on a non-string "writer").
        const bool old_xgrad = md != header.end() && md->is_object() && md->contains("writer") &&
                               md->at("writer").is_string() && md->at("writer") == "xgrad" &&
                               !md->contains("linear_weight");
        bool has_matrix = false;
        for (const auto& [key, e] : header.items())
            if (key != "__metadata__" && e.is_object() && e.contains("shape") && e["shape"].is_array() &&
                e["shape"].size() == 2)
                has_matrix = true;
        if (old_xgrad && has_matrix)
            throw fail("written by an xgrad from before Linear weights were stored (out, in) (its metadata has no "
                       "'linear_weight'): its Linear weights are (in, out), and a square one would load transposed; "
                       "transpose them (load_tensors, save_tensors) or train again");
    }
    const std::uint64_t data_start = 8 + n, data_size = file_size - data_start;

    std::vector<std::string> problems;
    struct Read {
        std::size_t k;        // index into tensors
        std::uint64_t offset;  // of the data in the file
        bool i64;              // an I64 entry, converted to T
    };
    std::vector<Read> plan;
    std::map<std::string, bool> expected;
    for (std::size_t k = 0; k < tensors.size(); ++k) {
        const std::string& name = tensors[k].first;  // not a structured binding: the lambda below uses it
        const Tensor<T>* t = tensors[k].second;
        expected[name] = true;
        const auto it = header.find(name);
        if (it == header.end()) {
            problems.push_back(fmt::format("missing '{}' {}", name, shape_str(t->shape())));
            continue;
        }
        const nlohmann::json& e = *it;
        auto bad = [&](const std::string& why) { problems.push_back(fmt::format("'{}' {}", name, why)); };
        if (!e.is_object()) {
            bad(fmt::format("entry is {}, not an object {{dtype, shape, data_offsets}}", json_str(e)));
            continue;
        }
        const auto dt = e.find("dtype"), sh = e.find("shape"), of = e.find("data_offsets");
        if (dt == e.end() || sh == e.end() || of == e.end()) {
            bad(fmt::format("entry has no {}", dt == e.end() ? "dtype" : sh == e.end() ? "shape" : "data_offsets"));
            continue;
        }
        if (!dt->is_string() || dtype_size(dt->get<std::string>()) == 0) {
            bad(fmt::format("has an unknown dtype {}", json_str(*dt)));
            continue;
        }
        const std::string dtype = dt->get<std::string>();
        if (!sh->is_array()) {
            bad(fmt::format("has a bad shape {} (not an array)", json_str(*sh)));
            continue;
        }
        std::vector<std::uint64_t> shape;
        for (std::size_t i = 0; i < sh->size() && shape.size() == i; ++i) {
            const nlohmann::json& d = (*sh)[i];
            // nlohmann parses non-negative integers as unsigned; 1e300, -3 and 2.5 are not
            if (d.is_number_unsigned())
                shape.push_back(d.get<std::uint64_t>());
            else
                bad(fmt::format("has a bad shape entry {} at position {} (dimensions are non-negative integers)",
                                json_str(d), i));
        }
        if (shape.size() != sh->size()) continue;
        if (!of->is_array() || of->size() != 2 || !(*of)[0].is_number_unsigned() || !(*of)[1].is_number_unsigned()) {
            bad(fmt::format("has bad data_offsets {} (expected [begin, end], non-negative integers)",
                            of->is_array() && of->size() == 2
                                ? fmt::format("[{}, {}]", json_str((*of)[0]), json_str((*of)[1]))
                                : json_str(*of)));
            continue;
        }
        const std::uint64_t begin = (*of)[0].get<std::uint64_t>(), end = (*of)[1].get<std::uint64_t>();
        std::size_t bytes = 0;
        if (!checked_shape_size(shape, bytes) || __builtin_mul_overflow(bytes, dtype_size(dtype), &bytes)) {
            bad(fmt::format("has shape {}, too large: more than 2^64 bytes of {}", shape_str(shape), dtype));
            continue;
        }
        if (begin > end || end - begin != bytes) {
            bad(fmt::format("data_offsets [{}, {}] do not hold shape {} of {} ({} bytes)", begin, end, shape_str(shape),
                            dtype, bytes));
            continue;
        }
        if (end > data_size) {
            bad(fmt::format("data_offsets [{}, {}] run past the {} data bytes of the file (truncated file?)", begin, end,
                            data_size));
            continue;
        }
        // PyTorch stores counters (BatchNorm's num_batches_tracked) as I64: they load into T when exact.
        const bool i64 = dtype == "I64";
        if (dtype != dtype_name<T>() && !i64) {
            bad(fmt::format("has dtype {}, the module wants {}", dtype, dtype_name<T>()));
            continue;
        }
        if (!std::equal(shape.begin(), shape.end(), t->shape().begin(), t->shape().end())) {
            bad(fmt::format("has shape {}, the module wants {}", shape_str(shape), shape_str(t->shape())));
            continue;
        }
        plan.push_back({k, data_start + begin, i64});
    }
    for (const auto& [key, value] : header.items())
        if (key != "__metadata__" && !expected.count(key))
            problems.push_back(fmt::format("unexpected '{}{}' in the file", key.substr(0, 60), key.size() > 60 ? "..." : ""));
    if (!problems.empty()) {
        throw fail(fmt::format("does not match the module:\n  {}", fmt::join(problems, "\n  ")));
    }
    Staged<T> s;
    s.values.resize(tensors.size());
    const double exact = std::ldexp(1.0, std::numeric_limits<T>::digits);  // integers T holds exactly
    for (const Read& r : plan) {
        std::vector<T>& v = s.values[r.k];
        v.resize(tensors[r.k].second->size());
        if (!r.i64) {
            read_at(v.data(), v.size() * sizeof(T), r.offset);
            continue;
        }
        std::vector<std::int64_t> raw(v.size());
        read_at(raw.data(), raw.size() * sizeof(std::int64_t), r.offset);
        for (std::size_t i = 0; i < raw.size(); ++i) {
            if (!(std::abs(double(raw[i])) <= exact))
                problems.push_back(fmt::format("'{}' holds the I64 value {} at element {}, not exact in {}",
                                               tensors[r.k].first, raw[i], i, dtype_name<T>()));
            v[i] = T(raw[i]);
        }
    }
    if (!problems.empty()) throw fail(fmt::format("does not match the module:\n  {}", fmt::join(problems, "\n  ")));
    const auto md = header.find("__metadata__");
    if (md != header.end() && md->is_object())
        for (auto it = md->begin(); it != md->end(); ++it)
            if (it->is_string()) s.meta[it.key()] = it->template get<std::string>();
    return s;
}

/// The module's state in PyTorch's state_dict order and names: the module's parameters, then its
/// buffers, then each child's state, recursively ("0.weight", "0.running_mean", ...).
template <class T>
void collect_state(Module<T>& m, const std::string& prefix, std::vector<std::pair<std::string, Tensor<T>*>>& out)
{
    for (const auto& [name, p] : m.named_parameters(false)) out.emplace_back(prefix + name, &p->value());
    for (const auto& [name, b] : m.named_buffers(false)) out.emplace_back(prefix + name, b);
    for (const auto& [name, c] : m.named_children()) collect_state(*c, prefix + name + ".", out);
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> state_of(Module<T>& m, const std::string& prefix = "")
{
    std::vector<std::pair<std::string, Tensor<T>*>> out;
    collect_state(m, prefix, out);
    return out;
}

template <class T>
void commit(const std::vector<std::pair<std::string, Tensor<T>*>>& tensors, const Staged<T>& s)
{
    for (std::size_t k = 0; k < tensors.size(); ++k)
        std::copy(s.values[k].begin(), s.values[k].end(), tensors[k].second->data());
}

}  // namespace

template <class T>
void save_tensors(const std::string& path, const std::vector<std::pair<std::string, const Tensor<T>*>>& tensors,
                  const std::map<std::string, std::string>& metadata)
{
    save_tensors_as("save_tensors", path, tensors, metadata);
}

template <class T>
std::map<std::string, std::string> load_tensors(const std::string& path,
                                                const std::vector<std::pair<std::string, Tensor<T>*>>& tensors)
{
    Staged<T> s = read_tensors("load_tensors", path, tensors);
    commit(tensors, s);
    return std::move(s.meta);
}

template <class T>
std::vector<std::pair<std::string, Tensor<T>*>> state_dict(Module<T>& module)
{
    return state_of(module);
}

template <class T>
void save_weights(Module<T>& module, const std::string& path)
{
    std::vector<std::pair<std::string, const Tensor<T>*>> ts;
    for (const auto& [name, t] : state_of(module)) ts.emplace_back(name, t);
    save_tensors_as("save_weights", path, ts, {});
}

template <class T>
void load_weights(Module<T>& module, const std::string& path)
{
    const std::vector<std::pair<std::string, Tensor<T>*>> ts = state_of(module);
    commit(ts, read_tensors("load_weights", path, ts, true));
}

template <class T>
void save_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer,
                     const std::map<std::string, std::string>& metadata)
{
    // The step count is an integer in memory and a 0-d tensor of T in the file ("optim.steps", as
    // checkpoints have always stored it): exact up to 2^digits (2^24 for float).
    const double max_steps = std::ldexp(1.0, std::numeric_limits<T>::digits);
    if (double(optimizer.steps()) > max_steps)
        throw WeightFileError(fmt::format("save_checkpoint: '{}': the step count {} is above {}, the largest that "
                                          "{} holds exactly",
                                          path, optimizer.steps(), max_steps, dtype_name<T>()));
    const Tensor<T> steps(T(optimizer.steps()));
    std::vector<std::pair<std::string, const Tensor<T>*>> ts;
    for (const auto& [name, t] : state_of(module, "model.")) ts.emplace_back(name, t);
    ts.emplace_back("optim.steps", &steps);
    for (const auto& [name, t] : optimizer.state()) ts.emplace_back("optim." + name, t);
    save_tensors_as("save_checkpoint", path, ts, metadata);
}

template <class T>
std::map<std::string, std::string> load_checkpoint(const std::string& path, Module<T>& module, Optimizer<T>& optimizer,
                                                   const std::vector<std::string>& integer_metadata)
{
    Tensor<T> steps(T(0));
    std::vector<std::pair<std::string, Tensor<T>*>> ts = state_of(module, "model.");
    ts.emplace_back("optim.steps", &steps);
    for (const auto& [name, t] : optimizer.state()) ts.emplace_back("optim." + name, t);
    Staged<T> s = read_tensors("load_checkpoint", path, ts, true);
    // A checkpoint is only ever written from finite training state; anything else is damage, and
    // a step count that is not a whole number cannot become Optimizer::steps().
    std::vector<std::string> problems;
    for (std::size_t k = 0; k < ts.size(); ++k) {
        const auto& v = s.values[k];
        const auto bad = std::find_if(v.begin(), v.end(), [](T x) { return !std::isfinite(x); });
        if (bad != v.end())
            problems.push_back(fmt::format("'{}' holds {} at element {}", ts[k].first, *bad, bad - v.begin()));
    }
    const double max_steps = std::ldexp(1.0, std::numeric_limits<T>::digits);  // exact integers in T
    for (std::size_t k = 0; k < ts.size(); ++k) {
        if (ts[k].first != "optim.steps" || s.values[k].size() != 1) continue;
        const double steps = double(s.values[k][0]);
        if (!(steps >= 0 && steps <= max_steps && std::floor(steps) == steps))
            problems.push_back(fmt::format("'optim.steps' is {}, not a step count (a whole number from 0 to {})", steps,
                                           max_steps));
    }
    for (const auto& key : integer_metadata) {
        const auto it = s.meta.find(key);
        if (it == s.meta.end()) {
            problems.push_back(fmt::format("metadata '{}' is missing", key));
            continue;
        }
        const std::string& v = it->second;
        const bool digits = !v.empty() && v.size() <= 9 && v.find_first_not_of("0123456789") == std::string::npos;
        if (!digits)
            problems.push_back(fmt::format("metadata '{}' is \"{}\", not a whole number from 0 to 999999999", key,
                                           v.substr(0, 40)));
    }
    if (!problems.empty()) {
        throw WeightFileError(
            fmt::format("load_checkpoint: '{}': damaged checkpoint:\n  {}", path, fmt::join(problems, "\n  ")));
    }
    commit(ts, s);
    optimizer.set_steps(std::size_t(steps()));
    return std::move(s.meta);
}

#define XGRAD_INSTANTIATE(T)                                                                                     \
    template void save_tensors(const std::string&, const std::vector<std::pair<std::string, const Tensor<T>*>>&, \
                               const std::map<std::string, std::string>&);                                      \
    template std::map<std::string, std::string> load_tensors(const std::string&,                                 \
                                                             const std::vector<std::pair<std::string, Tensor<T>*>>&); \
    template void save_checkpoint(const std::string&, Module<T>&, Optimizer<T>&,                                 \
                                  const std::map<std::string, std::string>&);                                    \
    template std::map<std::string, std::string> load_checkpoint(const std::string&, Module<T>&, Optimizer<T>&,     \
                                                                const std::vector<std::string>&);
XGRAD_INSTANTIATE(float)
XGRAD_INSTANTIATE(double)
#undef XGRAD_INSTANTIATE

template std::vector<std::pair<std::string, Tensor<float>*>> state_dict(Module<float>&);
template std::vector<std::pair<std::string, Tensor<double>*>> state_dict(Module<double>&);
template void save_weights(Module<float>&, const std::string&);
template void save_weights(Module<double>&, const std::string&);
template void load_weights(Module<float>&, const std::string&);
template void load_weights(Module<double>&, const std::string&);

}  // namespace xgrad::nn
