#include "text.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace xgrad::examples {

namespace fs = std::filesystem;

std::u32string decode_utf8(const std::string& bytes, const std::string& where)
{
    std::u32string out;
    out.reserve(bytes.size());
    const auto fail = [&](std::size_t at) {
        throw nn::DataError(where + ": invalid UTF-8 at byte " + std::to_string(at));
    };
    for (std::size_t i = 0; i < bytes.size();) {
        const auto b0 = static_cast<unsigned char>(bytes[i]);
        std::size_t n = 0;
        char32_t c = 0;
        if (b0 < 0x80) n = 1, c = b0;
        else if ((b0 & 0xE0) == 0xC0) n = 2, c = b0 & 0x1F;
        else if ((b0 & 0xF0) == 0xE0) n = 3, c = b0 & 0x0F;
        else if ((b0 & 0xF8) == 0xF0) n = 4, c = b0 & 0x07;
        else fail(i);
        if (i + n > bytes.size()) fail(i);
        for (std::size_t j = 1; j < n; ++j) {
            const auto b = static_cast<unsigned char>(bytes[i + j]);
            if ((b & 0xC0) != 0x80) fail(i);
            c = (c << 6) | (b & 0x3F);
        }
        // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
        static constexpr char32_t min_of[] = {0, 0, 0x80, 0x800, 0x10000};
        if (c < min_of[n] || (c >= 0xD800 && c <= 0xDFFF) || c > 0x10FFFF) fail(i);
        out.push_back(c);
        i += n;
    }
    return out;
}

std::string encode_utf8(const std::u32string& text)
{
    std::string out;
    out.reserve(text.size());
    for (char32_t c : text) {
        if (c < 0x80) {
            out.push_back(char(c));
        } else if (c < 0x800) {
            out.push_back(char(0xC0 | (c >> 6)));
            out.push_back(char(0x80 | (c & 0x3F)));
        } else if (c < 0x10000) {
            out.push_back(char(0xE0 | (c >> 12)));
            out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(char(0x80 | (c & 0x3F)));
        } else {
            out.push_back(char(0xF0 | (c >> 18)));
            out.push_back(char(0x80 | ((c >> 12) & 0x3F)));
            out.push_back(char(0x80 | ((c >> 6) & 0x3F)));
            out.push_back(char(0x80 | (c & 0x3F)));
        }
    }
    return out;
}

std::vector<std::u32string> split_fortunes(const std::u32string& text)
{
    std::vector<std::u32string> out;
    std::u32string cur;
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t end = text.find(U'\n', i);
        const bool last = end == std::u32string::npos;
        if (last) end = text.size();
        const std::u32string_view line(text.data() + i, end - i);
        if (line == U"%") {
            if (!cur.empty()) out.push_back(std::move(cur));
            cur.clear();
        } else {
            cur.append(line);
            cur.push_back(U'\n');  // a last line without '\n' gets one, as every other
        }
        i = last ? end : end + 1;
    }
    if (!cur.empty()) out.push_back(std::move(cur));
    return out;
}

namespace {

std::string with_hint(const std::string& msg, const std::string& hint) { return hint.empty() ? msg : msg + "; " + hint; }

bool ends_with(const std::string& s, const std::string& suffix)
{
    return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::vector<std::string> fortune_files(const std::string& dir, const std::string& hint)
{
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw nn::DataError(with_hint("no fortunes directory at '" + dir + "'", hint));
    std::vector<std::string> names;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
        const std::string name = it->path().filename().string();
        if (it->is_symlink() || !it->is_regular_file() || name.empty() || name[0] == '.' || ends_with(name, ".dat") ||
            ends_with(name, ".u8"))
            continue;
        names.push_back(name);
    }
    if (ec) throw nn::DataError(with_hint("cannot list '" + dir + "': " + ec.message(), hint));
    if (names.empty()) throw nn::DataError(with_hint("no fortune files in '" + dir + "'", hint));
    std::sort(names.begin(), names.end());
    std::vector<std::string> paths;
    for (const auto& n : names) paths.push_back((fs::path(dir) / n).string());
    return paths;
}

std::vector<std::u32string> read_fortune_file(const std::string& path)
{
    std::ifstream in(path, std::ios::binary);
    if (!in) throw nn::DataError(path + ": cannot open");
    std::ostringstream ss;
    ss << in.rdbuf();
    if (in.bad()) throw nn::DataError(path + ": read error");
    const std::string bytes = ss.str();
    if (bytes.empty()) throw nn::DataError(path + ": empty file");
    if (const auto nul = bytes.find('\0'); nul != std::string::npos)
        throw nn::DataError(path + ": NUL byte at " + std::to_string(nul) + " (not a text file)");
    auto fortunes = split_fortunes(decode_utf8(bytes, path));
    if (fortunes.empty()) throw nn::DataError(path + ": no fortunes (only '%' separator lines)");
    return fortunes;
}

std::vector<std::u32string> read_fortunes(const std::string& dir, const std::string& hint)
{
    std::vector<std::u32string> all;
    for (const auto& p : fortune_files(dir, hint)) {
        auto f = read_fortune_file(p);
        all.insert(all.end(), std::make_move_iterator(f.begin()), std::make_move_iterator(f.end()));
    }
    return all;
}

TextSplit split_train_val(const std::vector<std::u32string>& fortunes, std::size_t every)
{
    if (every < 2) throw std::invalid_argument("split_train_val: every must be at least 2, got " + std::to_string(every));
    TextSplit s;
    for (std::size_t i = 0; i < fortunes.size(); ++i) {
        const bool val = i % every == every - 1;
        std::u32string& dst = val ? s.val : s.train;
        dst += fortunes[i];
        dst += U"%\n";
        ++(val ? s.val_fortunes : s.train_fortunes);
    }
    return s;
}

Vocabulary::Vocabulary(const std::u32string& training_text) : chars_(training_text)
{
    std::sort(chars_.begin(), chars_.end());
    chars_.erase(std::unique(chars_.begin(), chars_.end()), chars_.end());
}

Index Vocabulary::id(char32_t c) const
{
    const auto it = std::lower_bound(chars_.begin(), chars_.end(), c);
    return it != chars_.end() && *it == c ? Index(it - chars_.begin()) + 1 : unknown;
}

char32_t Vocabulary::character(Index id) const
{
    if (id < 0 || std::size_t(id) >= size())
        throw std::out_of_range("Vocabulary: id " + std::to_string(id) + " outside [0, " + std::to_string(size()) + ")");
    return id == unknown ? U'\uFFFD' : chars_[std::size_t(id) - 1];
}

std::vector<Index> Vocabulary::encode(const std::u32string& text) const
{
    std::vector<Index> ids(text.size());
    std::transform(text.begin(), text.end(), ids.begin(), [this](char32_t c) { return id(c); });
    return ids;
}

std::u32string Vocabulary::decode(const std::vector<Index>& ids) const
{
    std::u32string s(ids.size(), U' ');
    std::transform(ids.begin(), ids.end(), s.begin(), [this](Index i) { return character(i); });
    return s;
}

BigramModel::BigramModel(const std::vector<Index>& train_ids, std::size_t vocab_size, double k)
    : v_(vocab_size), k_(k), counts_(vocab_size * vocab_size, 0.0), context_(vocab_size, 0.0)
{
    if (!(k > 0) || !std::isfinite(k)) throw std::invalid_argument("BigramModel: k must be a finite number > 0");
    if (vocab_size == 0) throw std::invalid_argument("BigramModel: empty vocabulary");
    for (Index i : train_ids)
        if (i < 0 || std::size_t(i) >= v_)
            throw std::invalid_argument("BigramModel: id " + std::to_string(i) + " outside the vocabulary of " +
                                        std::to_string(v_));
    for (std::size_t t = 1; t < train_ids.size(); ++t) {
        counts_[std::size_t(train_ids[t - 1]) * v_ + std::size_t(train_ids[t])] += 1;
        context_[std::size_t(train_ids[t - 1])] += 1;
    }
}

double BigramModel::probability(Index prev, Index next) const
{
    if (prev < 0 || next < 0 || std::size_t(prev) >= v_ || std::size_t(next) >= v_)
        throw std::out_of_range("BigramModel: id outside the vocabulary of " + std::to_string(v_));
    return (counts_[std::size_t(prev) * v_ + std::size_t(next)] + k_) / (context_[std::size_t(prev)] + k_ * double(v_));
}

double BigramModel::bits_per_char(const std::vector<Index>& ids) const
{
    if (ids.size() < 2) throw std::invalid_argument("BigramModel::bits_per_char: needs at least two characters");
    double bits = 0;
    for (std::size_t t = 1; t < ids.size(); ++t) bits -= std::log2(probability(ids[t - 1], ids[t]));
    return bits / double(ids.size() - 1);
}

TokenStreams::TokenStreams(const std::vector<Index>& ids, std::size_t streams, std::size_t first, std::size_t count)
    : count_(count ? count : streams - std::min(first, streams)), s_(streams ? ids.size() / streams : 0)
{
    if (streams == 0 || s_ < 2)
        throw std::invalid_argument("TokenStreams: " + std::to_string(ids.size()) + " characters are too few for " +
                                    std::to_string(streams) + " streams of at least 2");
    if (first >= streams || count_ == 0 || first + count_ > streams)
        throw std::invalid_argument("TokenStreams: streams [" + std::to_string(first) + ", " + std::to_string(first + count_) +
                                    ") of " + std::to_string(streams));
    ids_.assign(ids.begin() + std::ptrdiff_t(first * s_), ids.begin() + std::ptrdiff_t((first + count_) * s_));
}

void TokenStreams::chunk(std::size_t t, std::size_t l, IndexTensor& x, IndexTensor& y) const
{
    if (t + 1 >= s_)
        throw std::out_of_range("TokenStreams: chunk start " + std::to_string(t) + " past the streams' length " +
                                std::to_string(s_));
    l = std::min(l, s_ - 1 - t);
    x.resize({count_, l});
    y.resize({count_ * l});
    for (std::size_t b = 0; b < count_; ++b) {
        const Index* s = ids_.data() + b * s_ + t;
        std::copy(s, s + l, x.data() + b * l);
        std::copy(s + 1, s + 1 + l, y.data() + b * l);
    }
}

}  // namespace xgrad::examples
