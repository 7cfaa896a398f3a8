// A character-level language model on the English fortunes of Debian's `fortunes` package
// (scripts/fetch-data fortunes): Embedding → LSTM / GRU / causal transformer → Linear, trained by
// truncated backpropagation through time on B parallel streams of the training text. Every epoch
// reports the validation bits per character next to those of a character-bigram model with add-one
// smoothing fitted on the same training text; at the end, a sample at temperature 0.8. Default:
// 8 epochs of 180 chunks (32 streams × 64 characters), Adam 4e-3 (2e-3 for the transformer) with a
// cosine schedule, gradient norm clipped at 1. --distributed: R ranks train on R·B streams, rank r on
// streams [r·B, (r + 1)·B), the gradients averaged across ranks (a global batch of R·B streams);
// rank 0 evaluates, prints and writes.
#include <fmt/core.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "common/char_model.hpp"
#include "common/text.hpp"
#include "common/train.hpp"

using namespace xgrad;
using namespace xgrad::examples;
namespace fs = std::filesystem;

namespace {

struct LmOptions {
    std::string model = "lstm";
    std::size_t seq_len = 64;
    std::size_t steps_per_epoch = 180;
    std::size_t embed = 0;  // 0: 64 for the recurrent models, 128 for the transformer
    std::size_t hidden = 256;
    std::size_t layers = 2;
    std::size_t heads = 4;
    double dropout = 0.0;
    double clip = 1.0;
    double bigram_k = 1.0;
    std::size_t val_every = 10;
    std::size_t val_chars = 0;  // 0: all
    double temperature = 0.8;
    std::size_t sample_chars = 300;
    std::string prompt = "The ";
};

struct Row {
    int epoch = 0;
    double lr = 0, train_loss = 0, val_bpc = 0, bigram_bpc = 0, seconds = 0;
};

const char* csv_header = "epoch,lr,train_loss,train_bpc,val_loss,val_bpc,bigram_bpc,seconds\n";

std::string csv_row(const Row& r)
{
    return fmt::format("{},{:.6g},{:.6f},{:.6f},{:.6f},{:.6f},{:.6f},{:.3f}\n", r.epoch, r.lr, r.train_loss,
                       r.train_loss / std::log(2.0), r.val_bpc * std::log(2.0), r.val_bpc, r.bigram_bpc, r.seconds);
}

/// The rows of epochs 1..up_to of a previous run's metrics.csv, as text (none if it is missing).
std::vector<std::string> previous_rows(const std::string& path, int up_to)
{
    std::vector<std::string> rows;
    std::ifstream f(path);
    std::string line;
    if (!std::getline(f, line)) return rows;
    while (std::getline(f, line)) {
        const std::size_t used = line.find(',');
        if (used == std::string::npos) continue;
        try {
            if (std::stoi(line.substr(0, used)) <= up_to) rows.push_back(line + "\n");
        } catch (const std::exception&) {
            throw std::runtime_error("--resume: " + path + ": malformed line '" + line + "'");
        }
    }
    return rows;
}

void write_rows(const std::string& path, const std::vector<std::string>& rows)
{
    const std::string tmp = path + ".tmp";
    {
        std::ofstream f(tmp);
        f << csv_header;
        for (const auto& r : rows) f << r;
    }
    fs::rename(tmp, path);
}

std::size_t checkpoint_position(const std::map<std::string, std::string>& meta, const std::string& path)
{
    const auto it = meta.find("position");
    if (it == meta.end()) throw std::runtime_error("--resume: " + path + ": metadata field 'position' is missing");
    try {
        std::size_t used = 0;
        const unsigned long long v = std::stoull(it->second, &used);
        if (used == it->second.size()) return std::size_t(v);
    } catch (const std::exception&) {
    }
    throw std::runtime_error("--resume: " + path + ": metadata field 'position' is '" + it->second + "', expected a whole number");
}

void run(Options& o, LmOptions& lm)
{
    if (lm.model == "transformer" && lm.embed % lm.heads != 0)
        throw std::invalid_argument(fmt::format("--embed {} is not a multiple of --heads {}", lm.embed, lm.heads));
    if (o.threads > 0) xgrad::set_num_threads(o.threads);

    // The text.
    std::string dir = o.data_dir;
    if (dir.empty()) {
        const char* env = std::getenv("XGRAD_DATA");
        dir = (env ? std::string(env) : std::string("data")) + "/fortunes";
    }
    const auto fortunes = read_fortunes(dir, "run `scripts/fetch-data fortunes` to fetch and verify it");
    TextSplit split = split_train_val(fortunes, lm.val_every);
    if (o.train_limit) split.train.resize(std::min(split.train.size(), o.train_limit));
    if (lm.val_chars) split.val.resize(std::min(split.val.size(), lm.val_chars));  // for the bigram too
    const Vocabulary vocab(split.train);
    const std::vector<Index> train_ids = vocab.encode(split.train), val_ids = vocab.encode(split.val);
    std::size_t unknown = 0;
    for (Index i : val_ids) unknown += i == Vocabulary::unknown;
    const BigramModel bigram(train_ids, vocab.size(), lm.bigram_k);
    const double bigram_bpc = bigram.bits_per_char(val_ids);
    const bool lead = lead_rank();
    if (lead)
        fmt::print("fortunes in {}: {} train / {} validation fortunes (every {}th), {} / {} characters, vocabulary {} "
               "(+ unknown; {} validation characters unknown)\n",
               dir, split.train_fortunes, split.val_fortunes, lm.val_every, train_ids.size(), val_ids.size(),
               vocab.size() - 1, unknown);
    if (lead) fmt::print("bigram baseline (add-{:g} smoothing): {:.4f} bits/char on validation\n", lm.bigram_k, bigram_bpc);

    // The model.
    CharModelOptions mo;
    mo.kind = lm.model, mo.vocab = vocab.size(), mo.embed = lm.embed, mo.hidden = lm.hidden, mo.layers = lm.layers;
    mo.heads = lm.heads, mo.context = lm.seq_len, mo.dropout = lm.dropout, mo.seed = o.seed;
    CharModel model(mo);
    auto opt = make_optimizer(o, model);
    // Validation: many streams for fewer sequential steps; the transformer's chunks fit its context.
    const std::size_t val_len = model.recurrent() ? 128 : lm.seq_len;
    const TokenStreams val_streams(val_ids, std::min<std::size_t>(128, std::max<std::size_t>(1, val_ids.size() / (2 * val_len))));

    const std::string out = run_dir(o), ckpt = out + "/checkpoint.safetensors", csv = out + "/metrics.csv";
    int start = 0;
    std::size_t position = 0;  // where the next chunk starts in the training streams
    std::vector<std::string> rows;
    if (o.resume) {
        if (!fs::is_regular_file(ckpt)) throw std::runtime_error("--resume: no checkpoint at '" + ckpt + "'");
        std::map<std::string, std::string> meta;
        try {
            meta = nn::load_checkpoint(ckpt, model, *opt, {"epoch", "position"});
        } catch (const nn::WeightFileError& e) {
            throw std::runtime_error(std::string(e.what()) + "\n(a checkpoint of other --model, --embed, --hidden, --layers or --heads?)");
        }
        start = checkpoint_epoch(meta, ckpt, o.epochs);
        position = checkpoint_position(meta, ckpt);
        rows = previous_rows(csv, start);
        if (lead) fmt::print("resumed from {} after epoch {} (recurrent state reset)\n", ckpt, start);
    }
    // After the checkpoint is loaded (every rank reads the same file); rank 0's state wins anyway.
    Replicas replicas(model, o.distributed);
    const std::size_t ranks = std::size_t(replicas.world_size());
    const TokenStreams train_streams(train_ids, o.batch * ranks, o.batch * std::size_t(replicas.rank()), o.batch);
    if (position + 1 >= train_streams.length()) position = 0;
    const std::string streams = ranks > 1 ? fmt::format("{} streams ({} per rank x {} ranks)", o.batch * ranks, o.batch, ranks)
                                          : fmt::format("{} streams", o.batch);
    if (lead)
        fmt::print("char_lm {}: {} parameters, {} × {} characters, chunks of {}, {} steps per epoch, {} lr {}, clip {}\n",
                   model.describe(), model.num_parameters(), streams, train_streams.length(), lm.seq_len,
                   lm.steps_per_epoch, o.optimizer, o.lr, lm.clip);
    std::fflush(stdout);

    Tape<F> tape;
    CharModel::State state;
    IndexTensor x, y;
    const auto t0 = std::chrono::steady_clock::now();
    double last_bpc = 0;
    for (int epoch = start; epoch < o.epochs; ++epoch) {
        const auto e0 = std::chrono::steady_clock::now();
        const double lr = o.schedule == "cosine" ? nn::CosineLR(o.lr, o.epochs).lr(epoch)
                          : o.schedule == "step" ? nn::StepLR(o.lr, std::max(1, o.epochs / 3)).lr(epoch)
                                                 : o.lr;
        opt->set_lr(lr);
        Progress bar(!o.quiet && lead, lm.steps_per_epoch, "chars");
        double loss_sum = 0;
        std::size_t chars = 0;
        for (std::size_t step = 1; step <= lm.steps_per_epoch; ++step) {
            if (position + 1 >= train_streams.length()) position = 0, state.reset();  // wrapped: a new pass
            train_streams.chunk(position, lm.seq_len, x, y);
            if (!model.recurrent()) state.reset();
            position += x.shape()[1];
            const double loss = train_chunk(model, *opt, tape, x, y, state, lm.clip, &replicas);
            if (!std::isfinite(loss)) throw std::runtime_error(fmt::format("the training loss is {} at epoch {} step {}", loss, epoch + 1, step));
            loss_sum += loss;
            chars += y.size() * ranks;
            bar.update(step, chars, loss_sum / double(step), epoch + 1, o.epochs);
        }
        bar.done();
        std::vector<double> losses{loss_sum};
        replicas.sum(losses);  // every rank's chunks weigh the same
        const double train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
        if (!lead) continue;  // the replicas are equal: rank 0 alone evaluates and writes
        Row r;
        r.epoch = epoch + 1, r.lr = lr, r.train_loss = losses[0] / double(lm.steps_per_epoch * ranks), r.bigram_bpc = bigram_bpc;
        r.val_bpc = last_bpc = evaluate_bits_per_char(model, tape, val_streams, val_len);
        r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - e0).count();
        fmt::print("epoch {:>2}/{}  train {:.4f} bits/char  validation {:.4f} bits/char  (bigram {:.4f}, {:+.4f})  {:.1f}s "
                   "({:.1f}s training)\n",
                   r.epoch, o.epochs, r.train_loss / std::log(2.0), r.val_bpc, bigram_bpc, r.val_bpc - bigram_bpc, r.seconds,
                   train_seconds);
        std::fflush(stdout);
        rows.push_back(csv_row(r));
        write_rows(csv, rows);
        nn::save_checkpoint(ckpt, model, *opt,
                            {{"epoch", std::to_string(epoch + 1)}, {"position", std::to_string(position)},
                             {"example", "char_lm"}, {"model", lm.model}});
        plot_curves(out, "set multiplot layout 1,2 title 'char_lm (" + lm.model + ") on fortunes'\n"
                         "set title 'bits per character'\nplot '" + out + "/metrics.csv' using 1:4 with linespoints title 'train', "
                         "'' using 1:6 with linespoints title 'validation', '' using 1:7 with lines dashtype 2 title 'bigram (validation)'\n"
                         "set title 'learning rate'\nplot '" + out + "/metrics.csv' using 1:2 with linespoints title 'lr'\n"
                         "unset multiplot\n");
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (!lead) return;
    nn::save_weights(model, out + "/model.safetensors");
    if (start < o.epochs)
        fmt::print("validation {:.4f} bits/char after {} epochs, {:.4f} {} the bigram's {:.4f}; time {:.1f}s\n", last_bpc,
                   o.epochs, std::abs(bigram_bpc - last_bpc), last_bpc <= bigram_bpc ? "below" : "above", bigram_bpc, seconds);
    const std::u32string prompt = decode_utf8(lm.prompt, "--prompt");
    const std::string sample = encode_utf8(prompt + sample_text(model, vocab, prompt, lm.sample_chars, lm.temperature, o.seed));
    std::ofstream(out + "/sample.txt") << sample << "\n";
    fmt::print("sample ({} characters at temperature {:g}, seed {}):\n{}\n", lm.sample_chars, lm.temperature, o.seed, sample);
    fmt::print("metrics: {}/metrics.csv  plot: {}/curves.png  weights: {}/model.safetensors  sample: {}/sample.txt\n", out,
               out, out, out);
}

}  // namespace

int main(int argc, char** argv)
{
    Options o;
    o.example = "char_lm-lstm", o.data_parallel = true;
    o.epochs = 8, o.batch = 32, o.lr = 4e-3, o.optimizer = "adam", o.schedule = "cosine";
    LmOptions lm;
    CLI::App app{"Character-level language model (LSTM, GRU or causal transformer) on Debian's English fortunes"};
    return run_example(
        app, o, argc, argv,
        [&] {
            if (lm.embed == 0) lm.embed = lm.model == "transformer" ? 128 : 64;
            if (app.count("--lr") == 0 && lm.model == "transformer") o.lr = 2e-3;
            run(o, lm);
        },
        [&](CLI::App& a) {
            // The shared options that mean nothing here; --batch-size is the number of streams.
            a.remove_option(a.get_option("--dataset"));
            a.remove_option(a.get_option("--val-size"));
            a.get_option("--batch-size")->description("parallel streams of the training text (the batch; per rank with --distributed)");
            a.get_option("--lr")->description("learning rate (default: 0.004; 0.002 for the transformer)");
            a.get_option("--data-dir")->description("directory of the fortune files (default: $XGRAD_DATA or ./data, then fortunes/)");
            a.get_option("--train-limit")->description("use only the first N training characters (quick runs; 0: all)");
            a.add_option("--model", lm.model, "lstm, gru or transformer (default run directory runs/char_lm-<model>)")
                ->check(CLI::IsMember({"lstm", "gru", "transformer"}))
                ->each([&o](const std::string& m) { o.example = "char_lm-" + m; })  // before the --out check
                ->capture_default_str();
            a.add_option("--seq-len", lm.seq_len, "characters per chunk (truncated BPTT; the transformer's context)")
                ->check(int_in(1, 4096))
                ->capture_default_str();
            a.add_option("--steps-per-epoch", lm.steps_per_epoch, "training chunks per epoch (the streams continue across epochs)")
                ->check(int_in(1, 1000000))
                ->capture_default_str();
            a.add_option("--embed", lm.embed, "embedding width (default: 64; 128 for the transformer, its width)")
                ->check(int_in(1, 65536));
            a.add_option("--hidden", lm.hidden, "LSTM/GRU hidden size")->check(int_in(1, 65536))->capture_default_str();
            a.add_option("--layers", lm.layers, "recurrent layers or transformer blocks")->check(int_in(1, 64))->capture_default_str();
            a.add_option("--heads", lm.heads, "transformer attention heads")->check(int_in(1, 256))->capture_default_str();
            a.add_option("--dropout", lm.dropout, "dropout between recurrent layers / in the transformer blocks")
                ->check(real_in(0, 1, true, false))
                ->capture_default_str();
            a.add_option("--clip", lm.clip, "gradient clipping: largest total gradient norm (0: none)")
                ->check(real_in(0, 1e6, true, true))
                ->capture_default_str();
            a.add_option("--bigram-k", lm.bigram_k, "the bigram baseline's add-k smoothing")
                ->check(real_in(0, 1e6))
                ->capture_default_str();
            a.add_option("--val-every", lm.val_every, "every k-th fortune is in the validation set")
                ->check(int_in(2, 1000000))
                ->capture_default_str();
            a.add_option("--val-chars", lm.val_chars, "score only the first N validation characters (quick runs; 0: all)")
                ->check(int_in(0, 1 << 30))
                ->capture_default_str();
            a.add_option("--temperature", lm.temperature, "sampling temperature")->check(real_in(0, 100))->capture_default_str();
            a.add_option("--sample-chars", lm.sample_chars, "characters sampled at the end")->check(int_in(0, 1000000))->capture_default_str();
            a.add_option("--prompt", lm.prompt, "the sample's prompt")->capture_default_str();
        });
}
