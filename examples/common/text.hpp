#pragma once
// Text for the character-level language model (examples/char_lm): the fortunes corpus (files of
// entries separated by lines holding only '%'), its deterministic train/validation split, the
// character vocabulary, a smoothed character-bigram baseline, and the text as parallel streams cut
// into chunks for truncated backpropagation through time. Characters are Unicode code points
// (the files are UTF-8).
#include <cstddef>
#include <string>
#include <vector>

#include "xgrad/nn/data.hpp"

namespace xgrad::examples {

/// UTF-8 → code points; invalid UTF-8 throws nn::DataError naming `where` and the byte offset.
std::u32string decode_utf8(const std::string& bytes, const std::string& where);
std::string encode_utf8(const std::u32string& text);

/// The entries of a fortune file's text: the text between lines that hold only '%', each ending
/// with its last line's '\n'; empty entries are dropped.
std::vector<std::u32string> split_fortunes(const std::u32string& text);

/// The corpus files of a fortunes directory: its regular files (symlinks, hidden files, *.dat
/// indexes and *.u8 links left out), sorted by name. A missing directory or one without such
/// files throws nn::DataError naming the path and `hint`.
std::vector<std::string> fortune_files(const std::string& dir, const std::string& hint = "");

/// The fortunes of one file. An unreadable or empty file, a NUL byte (a binary file), invalid
/// UTF-8 or a file without any entry throw nn::DataError naming the path.
std::vector<std::u32string> read_fortune_file(const std::string& path);

/// Every fortune of the directory's files (fortune_files order, then file order).
std::vector<std::u32string> read_fortunes(const std::string& dir, const std::string& hint = "");

/// Train and validation text: fortune i goes to validation when i % every == every − 1 (every
/// k-th fortune, so ~1/k of the text), to training otherwise; each fortune is followed by "%\n",
/// as in the files, so a model learns where a fortune ends.
struct TextSplit {
    std::u32string train, val;
    std::size_t train_fortunes = 0, val_fortunes = 0;
};
TextSplit split_train_val(const std::vector<std::u32string>& fortunes, std::size_t every = 10);

/// The characters of a training text, sorted, after id 0: the unknown symbol, which stands for any
/// character not seen in training.
class Vocabulary {
public:
    static constexpr Index unknown = 0;
    Vocabulary() = default;
    explicit Vocabulary(const std::u32string& training_text);
    std::size_t size() const { return chars_.size() + 1; }
    Index id(char32_t c) const;
    /// The character of an id; U+FFFD for the unknown symbol. An id out of range throws std::out_of_range.
    char32_t character(Index id) const;
    std::vector<Index> encode(const std::u32string& text) const;
    std::u32string decode(const std::vector<Index>& ids) const;
    const std::u32string& characters() const { return chars_; }

private:
    std::u32string chars_;  // sorted; id = position + 1
};

/// A character-bigram model with add-k smoothing: P(b | a) = (n(a, b) + k) / (n(a) + k·V), with
/// n(a, b) the count of a followed by b in the training ids, n(a) = Σ_b n(a, b) and V the vocabulary
/// size (so every context's probabilities sum to 1, and an unseen context is uniform).
class BigramModel {
public:
    /// k > 0, V ≥ 1 and every id < V, else std::invalid_argument.
    BigramModel(const std::vector<Index>& train_ids, std::size_t vocab_size, double k = 1.0);
    double probability(Index prev, Index next) const;
    /// Mean −log₂ P(x_t | x_{t−1}) over t = 1 … n − 1 (the first character has no context);
    /// fewer than two ids throw std::invalid_argument.
    double bits_per_char(const std::vector<Index>& ids) const;
    std::size_t vocab_size() const { return v_; }
    double k() const { return k_; }

private:
    std::size_t v_;
    double k_;
    std::vector<double> counts_;   // (V, V) row-major: counts_[a·V + b] = n(a, b)
    std::vector<double> context_;  // n(a)
};

/// A text as B parallel streams for truncated BPTT: stream b is ids[b·S, (b + 1)·S), S = ⌊n / B⌋
/// (the last n mod B ids are unused). Chunk (t, l): inputs x (B, l) = stream[t, t + l) and targets
/// y (B·l, row-major like x) = stream[t + 1, t + l + 1); t + l < S.
/// A shard (data-parallel ranks) keeps the geometry of all B streams and serves streams
/// [first, first + count) only: the shards of B = count × ranks together are the whole.
class TokenStreams {
public:
    /// B ≥ 1 and S ≥ 2, else std::invalid_argument naming both; count 0: streams − first.
    TokenStreams(const std::vector<Index>& ids, std::size_t streams, std::size_t first = 0, std::size_t count = 0);
    /// The streams served (the chunks' rows).
    std::size_t streams() const { return count_; }
    std::size_t length() const { return s_; }
    /// The chunk starting at t of length min(l, S − 1 − t) into x, y (resized); t ≥ S − 1 throws
    /// std::out_of_range.
    void chunk(std::size_t t, std::size_t l, IndexTensor& x, IndexTensor& y) const;

private:
    std::vector<Index> ids_;  // the served streams only
    std::size_t count_, s_;
};

}  // namespace xgrad::examples
