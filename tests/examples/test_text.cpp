// The text side of examples/char_lm: UTF-8, fortune files and their errors, the deterministic
// train/validation split, the vocabulary, the add-k bigram model against values worked by hand,
// the streams for truncated BPTT, and a tiny LSTM trained on a tiny text.
#define BOOST_TEST_MODULE examples_text
#include <boost/test/unit_test.hpp>
#include <xtensor/xbuilder.hpp>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/char_model.hpp"
#include "common/text.hpp"

using namespace xgrad;
using namespace xgrad::examples;
namespace fs = std::filesystem;

namespace {

fs::path temp_dir(const std::string& name)
{
    fs::path d = fs::temp_directory_path() / ("xgrad_text_" + std::to_string(::getpid())) / name;
    fs::remove_all(d);
    fs::create_directories(d);
    return d;
}

void write_bytes(const fs::path& p, const std::string& s) { std::ofstream(p, std::ios::binary) << s; }

template <class F>
void expect_data_error(F&& f, const std::string& path, const std::string& reason)
{
    try {
        f();
        BOOST_ERROR("no error for " << path);
    } catch (const nn::DataError& e) {
        const std::string msg = e.what();
        BOOST_TEST(msg.find(path) != std::string::npos, msg);
        BOOST_TEST(msg.find(reason) != std::string::npos, "'" << reason << "' not in: " << msg);
    }
}

std::vector<std::u32string> numbered_fortunes(std::size_t n)
{
    std::vector<std::u32string> f;
    for (std::size_t i = 0; i < n; ++i) f.push_back(U"fortune " + std::u32string(1, char32_t(U'a' + i % 26)) + U"\n");
    return f;
}

}  // namespace

BOOST_AUTO_TEST_CASE(utf8_round_trip_and_invalid_bytes)
{
    const std::string s = "a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";  // a é € 😀 z
    const std::u32string u = decode_utf8(s, "x");
    BOOST_TEST((u == U"a\u00e9\u20ac\U0001F600z"));
    BOOST_TEST(encode_utf8(u) == s);
    for (const std::string bad : {"\xff", "ab\xc3", "\xc3(", "\xc0\xaf", "\xed\xa0\x80"}) {
        try {
            decode_utf8(bad, "some/file");
            BOOST_ERROR("no error for invalid UTF-8");
        } catch (const nn::DataError& e) {
            BOOST_TEST(std::string(e.what()).find("some/file: invalid UTF-8 at byte") != std::string::npos, e.what());
        }
    }
}

BOOST_AUTO_TEST_CASE(fortunes_split_at_percent_lines)
{
    const auto f = split_fortunes(U"one\nline two\n%\n\n%\n%\nthree % not a separator\n%\nlast without newline");
    BOOST_TEST_REQUIRE(f.size() == 4u);
    BOOST_TEST((f[0] == U"one\nline two\n"));
    BOOST_TEST((f[1] == U"\n"));  // a blank line is an entry; only empty ones are dropped
    BOOST_TEST((f[2] == U"three % not a separator\n"));
    BOOST_TEST((f[3] == U"last without newline\n"));
}

BOOST_AUTO_TEST_CASE(fortune_files_and_their_errors_name_the_path)
{
    const fs::path d = temp_dir("files");
    write_bytes(d / "b", "second\n%\n");
    write_bytes(d / "a", "first\n%\nalso first file\n%\n");
    write_bytes(d / "a.dat", "\x01\x02");  // indexes, links and hidden files are not corpus files
    fs::create_symlink(d / "a", d / "a.u8");
    fs::create_symlink(d / "b", d / "link");
    write_bytes(d / ".hidden", "x\n");
    const auto files = fortune_files(d.string());
    BOOST_TEST_REQUIRE(files.size() == 2u);
    BOOST_TEST(files[0] == (d / "a").string());
    BOOST_TEST(files[1] == (d / "b").string());
    const auto all = read_fortunes(d.string());
    BOOST_TEST_REQUIRE(all.size() == 3u);
    BOOST_TEST((all[2] == U"second\n"));

    expect_data_error([&] { fortune_files((d / "missing").string(), "run fetch"); }, (d / "missing").string(), "run fetch");
    const fs::path empty_dir = temp_dir("empty_dir");
    expect_data_error([&] { fortune_files(empty_dir.string()); }, empty_dir.string(), "no fortune files");
    const fs::path bad = temp_dir("bad");
    write_bytes(bad / "empty", "");
    expect_data_error([&] { read_fortune_file((bad / "empty").string()); }, (bad / "empty").string(), "empty file");
    write_bytes(bad / "binary", std::string("text\0more", 9));
    expect_data_error([&] { read_fortune_file((bad / "binary").string()); }, (bad / "binary").string(), "NUL byte at 4");
    write_bytes(bad / "latin1", "caf\xe9\n");
    expect_data_error([&] { read_fortune_file((bad / "latin1").string()); }, (bad / "latin1").string(), "invalid UTF-8 at byte 3");
    write_bytes(bad / "separators", "%\n%\n");
    expect_data_error([&] { read_fortune_file((bad / "separators").string()); }, (bad / "separators").string(), "no fortunes");
    expect_data_error([&] { read_fortune_file((bad / "nope").string()); }, (bad / "nope").string(), "cannot open");
    // A corrupt file in a corpus directory stops the whole read, naming that file.
    write_bytes(d / "c", "ok\n%\n\xff\n");
    expect_data_error([&] { read_fortunes(d.string()); }, (d / "c").string(), "invalid UTF-8");
    fs::remove_all(d.parent_path());
}

BOOST_AUTO_TEST_CASE(split_is_deterministic_disjoint_and_every_kth)
{
    const auto f = numbered_fortunes(95);
    const TextSplit a = split_train_val(f, 10), b = split_train_val(f, 10);
    BOOST_TEST((a.train == b.train));
    BOOST_TEST((a.val == b.val));
    BOOST_TEST(a.val_fortunes == 9u);  // fortunes 9, 19, ..., 89
    BOOST_TEST(a.train_fortunes == 86u);
    // Every fortune is in exactly one part: the parts' entries, re-split, are the corpus.
    const auto tr = split_fortunes(a.train), va = split_fortunes(a.val);
    BOOST_TEST_REQUIRE(tr.size() == 86u);
    BOOST_TEST_REQUIRE(va.size() == 9u);
    for (std::size_t i = 0; i < 9; ++i) BOOST_TEST((va[i] == f[10 * i + 9]));
    std::size_t t = 0;
    for (std::size_t i = 0; i < f.size(); ++i)
        if (i % 10 != 9) BOOST_TEST((tr[t++] == f[i]));
    BOOST_TEST(a.train.size() + a.val.size() == [&] {
        std::size_t n = 0;
        for (const auto& s : f) n += s.size() + 2;
        return n;
    }());
    BOOST_CHECK_THROW(split_train_val(f, 1), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(vocabulary_of_training_characters_and_unknown)
{
    const Vocabulary v(U"banana\n");
    BOOST_TEST(v.size() == 5u);  // unknown, then '\n' < 'a' < 'b' < 'n'
    BOOST_TEST(v.id(U'\n') == 1);
    BOOST_TEST(v.id(U'n') == 4);
    BOOST_TEST(v.id(U'z') == Vocabulary::unknown);
    BOOST_TEST((v.encode(U"bz") == std::vector<Index>{3, 0}));
    BOOST_TEST((v.decode({3, 2, 0}) == U"ba\uFFFD"));
    BOOST_CHECK_THROW(v.character(5), std::out_of_range);
}

// Training text "abab": ids a = 1, b = 2 (0 unknown), V = 3; pairs a→b twice, b→a once.
// Add-one: P(·|a) = (1, 3, 1)/5 for (unknown, a, b)... in id order: P(0|a) = 1/5, P(a|a) = 1/5,
// P(b|a) = 3/5; P(·|b) = (1, 2, 1)/4; P(·|unknown) = 1/3 each (an unseen context).
// Validation "abzb" (z unknown): a→b 3/5, b→z 1/4, z→b 1/3, so
// bits/char = (log₂(5/3) + log₂4 + log₂3)/3 = log₂(20)/3 = 1.4406426982957874.
BOOST_AUTO_TEST_CASE(bigram_add_one_matches_the_hand_computation)
{
    const Vocabulary v(U"abab");
    const BigramModel m(v.encode(U"abab"), v.size(), 1.0);
    BOOST_TEST(m.probability(1, 2) == 3.0 / 5.0, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(m.probability(1, 1) == 1.0 / 5.0, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(m.probability(2, 1) == 2.0 / 4.0, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(m.probability(2, 0) == 1.0 / 4.0, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(m.probability(0, 2) == 1.0 / 3.0, boost::test_tools::tolerance(1e-15));
    BOOST_TEST(m.bits_per_char(v.encode(U"abzb")) == 1.4406426982957874, boost::test_tools::tolerance(1e-14));
    // Add-½: P(b|a) = 2.5/3.5, P(z|b) = 0.5/2.5, P(b|z) = 1/3.
    const BigramModel h(v.encode(U"abab"), v.size(), 0.5);
    BOOST_TEST(h.bits_per_char(v.encode(U"abzb")) == -(std::log2(2.5 / 3.5) + std::log2(0.5 / 2.5) + std::log2(1.0 / 3)) / 3,
               boost::test_tools::tolerance(1e-14));
    BOOST_CHECK_THROW(m.bits_per_char({1}), std::invalid_argument);
    BOOST_CHECK_THROW(BigramModel(v.encode(U"abab"), v.size(), 0.0), std::invalid_argument);
    BOOST_CHECK_THROW(BigramModel({1, 7}, 3), std::invalid_argument);
}

BOOST_AUTO_TEST_CASE(bigram_probabilities_sum_to_one_per_context)
{
    const std::u32string text = U"the quick brown fox jumps over the lazy dog\nand then some more text\n";
    const Vocabulary v(text);
    for (double k : {1.0, 0.1, 3.0}) {
        const BigramModel m(v.encode(text), v.size(), k);
        for (std::size_t a = 0; a < v.size(); ++a) {
            double total = 0;
            for (std::size_t b = 0; b < v.size(); ++b) total += m.probability(Index(a), Index(b));
            BOOST_TEST(total == 1.0, boost::test_tools::tolerance(1e-12));
        }
    }
}

BOOST_AUTO_TEST_CASE(streams_cut_chunks_with_next_character_targets)
{
    std::vector<Index> ids(23);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
    const TokenStreams s(ids, 3);  // S = 7: streams 0..6, 7..13, 14..20 (21, 22 unused)
    BOOST_TEST(s.length() == 7u);
    IndexTensor x, y;
    s.chunk(0, 4, x, y);
    BOOST_TEST((x == IndexTensor{{0, 1, 2, 3}, {7, 8, 9, 10}, {14, 15, 16, 17}}));
    BOOST_TEST((y == IndexTensor{1, 2, 3, 4, 8, 9, 10, 11, 15, 16, 17, 18}));
    s.chunk(4, 4, x, y);  // the last chunk is shorter: targets end at the stream's end
    BOOST_TEST((x == IndexTensor{{4, 5}, {11, 12}, {18, 19}}));
    BOOST_TEST((y == IndexTensor{5, 6, 12, 13, 19, 20}));
    BOOST_CHECK_THROW(s.chunk(6, 4, x, y), std::out_of_range);
    BOOST_CHECK_THROW(TokenStreams(ids, 12), std::invalid_argument);
}

// char_lm --distributed: rank r of R serves streams [r·B, (r + 1)·B) of B·R; the shards' chunks
// stacked are the whole's chunk.
BOOST_AUTO_TEST_CASE(stream_shards_stack_to_the_whole)
{
    std::vector<Index> ids(47);
    for (std::size_t i = 0; i < ids.size(); ++i) ids[i] = Index(i);
    const TokenStreams whole(ids, 4), first(ids, 4, 0, 2), second(ids, 4, 2, 2);  // S = 11
    BOOST_TEST(first.streams() == 2u);
    BOOST_TEST(second.length() == whole.length());
    IndexTensor x, y, x0, y0, x1, y1;
    for (std::size_t t : {0u, 5u, 8u}) {
        whole.chunk(t, 4, x, y);
        first.chunk(t, 4, x0, y0);
        second.chunk(t, 4, x1, y1);
        BOOST_TEST((xt::concatenate(xt::xtuple(x0, x1), 0) == x));
        BOOST_TEST((xt::concatenate(xt::xtuple(y0, y1), 0) == y));
    }
    BOOST_TEST((x1 == IndexTensor{{30, 31}, {41, 42}}));  // t = 8: two left before each stream's end
    BOOST_CHECK_THROW(TokenStreams(ids, 4, 3, 2), std::invalid_argument);
    BOOST_CHECK_THROW(TokenStreams(ids, 4, 4), std::invalid_argument);
}

// A tiny LSTM on a tiny periodic text: a few dozen truncated-BPTT steps bring the validation bits
// per character well below where they start (log₂ V for a fresh model) and below the bigram's.
BOOST_AUTO_TEST_CASE(tiny_lstm_learns_a_tiny_text)
{
    std::u32string text;
    for (int i = 0; i < 60; ++i) text += U"abcab cabbac ";  // bigrams are ambiguous, longer context is not
    const Vocabulary v(text);
    const std::vector<Index> ids = v.encode(text);
    const TokenStreams streams(ids, 4);
    CharModelOptions o;
    o.kind = "lstm", o.vocab = v.size(), o.embed = 8, o.hidden = 24, o.layers = 1, o.seed = 3;
    CharModel model(o);
    nn::Adam<F> opt(model.parameters(), nn::AdamOptions(0.02));
    Tape<F> tape;
    const double before = evaluate_bits_per_char(model, tape, streams, 16);
    CharModel::State state;
    IndexTensor x, y;
    std::size_t t = 0;
    for (int step = 0; step < 60; ++step) {
        if (t + 1 >= streams.length()) t = 0, state.reset();
        streams.chunk(t, 16, x, y);
        t += x.shape()[1];
        train_chunk(model, opt, tape, x, y, state, 1.0);
    }
    const double after = evaluate_bits_per_char(model, tape, streams, 16);
    const double bigram = BigramModel(ids, v.size()).bits_per_char(ids);
    BOOST_TEST_MESSAGE("bits/char " << before << " -> " << after << ", bigram " << bigram);
    BOOST_TEST(after < before - 1.0);
    BOOST_TEST(after < bigram);
    // Sampling is reproducible from its seed and yields only known characters.
    const std::u32string s1 = sample_text(model, v, U"ab", 40, 0.8, 7), s2 = sample_text(model, v, U"ab", 40, 0.8, 7);
    BOOST_TEST((s1 == s2));
    BOOST_TEST(s1.size() == 40u);
    for (char32_t c : s1) BOOST_TEST(v.id(c) != Vocabulary::unknown);
}
