// Every nn layer, optimizer, schedule and initializer, given bad input or bad options, throws a
// typed error whose message names the layer (or option) and the bad values. One table per family:
// each row is the input, the exception type and the exact message a user sees.
#define BOOST_TEST_MODULE nn_layer_errors
#include <boost/test/unit_test.hpp>

#include <cfloat>
#include <functional>
#include <limits>
#include <typeinfo>

#include "xgrad/nn/gradcheck.hpp"
#include "xgrad/nn/init.hpp"
#include "xgrad/nn/layers.hpp"
#include "xgrad/nn/losses.hpp"
#include "xgrad/nn/optim.hpp"

using namespace xgrad;
using namespace xgrad::nn;

namespace {

const std::type_info& shape_error = typeid(ShapeError);
const std::type_info& invalid = typeid(std::invalid_argument);
const std::type_info& out_of_range = typeid(std::out_of_range);
const std::type_info& logic_error = typeid(std::logic_error);

struct Case {
    std::string name;
    const std::type_info* type;
    std::string message;  ///< the exact what()
    std::function<void()> run;
};

std::string type_name(const std::type_info& t)
{
    if (t == typeid(ShapeError)) return "xgrad::ShapeError";
    if (t == typeid(std::invalid_argument)) return "std::invalid_argument";
    if (t == typeid(std::out_of_range)) return "std::out_of_range";
    if (t == typeid(std::logic_error)) return "std::logic_error";
    return t.name();
}

void check(const std::vector<Case>& cases)
{
    for (const Case& c : cases) {
        BOOST_TEST_CONTEXT(c.name)
        {
            try {
                c.run();
                BOOST_ERROR("no exception thrown");
            } catch (const std::exception& e) {
                BOOST_TEST(type_name(typeid(e)) == type_name(*c.type), "message: " << e.what());
                BOOST_TEST(std::string(e.what()) == c.message);
            }
        }
    }
}

Tensor<float> zeros(const Shape& s) { return xt::zeros<float>(s); }
const double kNaN = std::numeric_limits<double>::quiet_NaN();
const double kInf = std::numeric_limits<double>::infinity();

/// A module that registers what it is told to (duplicate names, a null child).
struct Registrar : Module<float> {
    explicit Registrar(int what)
    {
        if (what == 0) {
            register_parameter("w", zeros({1}));
            register_parameter("w", zeros({1}));
        } else if (what == 1) {
            register_module("a", std::make_unique<ReLU<float>>());
            register_module("a", std::make_unique<ReLU<float>>());
        } else {
            register_module("a", std::unique_ptr<Module<float>>());
        }
    }
    Var<float> forward(const Var<float>& x) override { return x; }
};

}  // namespace

BOOST_AUTO_TEST_CASE(linear_and_conv_layers)
{
    Tape<float> t;
    Linear<float> lin(3, 2), lin_nb(3, 2, false);
    Conv2d<float> conv(Conv2dOptions(3, 8, 3));
    auto x24 = t.constant(zeros({2, 4})), x3 = t.constant(zeros({3})), x1155 = t.constant(zeros({1, 1, 5, 5})),
         x355 = t.constant(zeros({3, 5, 5})), x1322 = t.constant(zeros({1, 3, 2, 2}));
    check({
        {"linear_wrong_in_features", &shape_error, "Linear(3→2): expected input (B,3), got (2,4)", [&] { lin(x24); }},
        {"linear_1d_input", &shape_error, "Linear(3→2): expected input (B,3), got (3)", [&] { lin(x3); }},
        {"linear_no_bias_wrong_in_features", &shape_error, "Linear(3→2): expected input (B,3), got (2,4)",
         [&] { lin_nb(x24); }},
        {"linear_empty_var", &logic_error, "xgrad: use of an empty Var (default-constructed, never assigned)",
         [&] { lin(Var<float>()); }},
        {"linear_zero_in_features", &invalid, "Linear(0→2): in_features and out_features must be at least 1",
         [] { Linear<float>(0, 2); }},
        {"linear_zero_out_features", &invalid, "Linear(3→0): in_features and out_features must be at least 1",
         [] { Linear<float>(3, 0); }},
        {"conv_wrong_channels", &shape_error, "Conv2d(3→8): expected input (N,3,H,W), got (1,1,5,5)",
         [&] { conv(x1155); }},
        {"conv_3d_input", &shape_error, "Conv2d(3→8): expected input (N,3,H,W), got (3,5,5)", [&] { conv(x355); }},
        {"conv_input_smaller_than_kernel", &shape_error,
         "conv2d: input (1,3,2,2), weight (8,3,3,3): kernel 3x3 is larger than the padded input", [&] { conv(x1322); }},
        {"conv_zero_in_channels", &invalid, "Conv2d(0→8, 3x3): in_channels must be at least 1, got 0",
         [] { Conv2d<float>(Conv2dOptions(0, 8, 3)); }},
        {"conv_zero_out_channels", &invalid, "Conv2d(3→0, 3x3): out_channels must be at least 1, got 0",
         [] { Conv2d<float>(Conv2dOptions(3, 0, 3)); }},
        {"conv_zero_kernel", &invalid, "Conv2d(3→8, 0x0): kernel_size must be at least 1, got 0",
         [] { Conv2d<float>(Conv2dOptions(3, 8, 0)); }},
        {"conv_zero_stride", &invalid, "Conv2d(3→8, 3x3): stride must be at least 1, got 0",
         [] { Conv2d<float>(Conv2dOptions(3, 8, 3).stride(0)); }},
    });
}

BOOST_AUTO_TEST_CASE(pool_flatten_activation_dropout_layers)
{
    Tape<float> t;
    auto x1122 = t.constant(zeros({1, 1, 2, 2})), x44 = t.constant(zeros({4, 4})), x23 = t.constant(zeros({2, 3}));
    check({
        {"maxpool_kernel_0", &invalid, "MaxPool2d: kernel size must be at least 1, got 0", [] { MaxPool2d<float>(0); }},
        {"avgpool_kernel_0", &invalid, "AvgPool2d: kernel size must be at least 1, got 0", [] { AvgPool2d<float>(0, 2); }},
        {"maxpool_kernel_larger_than_input", &shape_error, "max_pool2d: kernel 3 is larger than the input (1,1,2,2)",
         [&] { MaxPool2d<float>(3)(x1122); }},
        {"avgpool_2d_input", &shape_error, "avg_pool2d: input (4,4) must be (N,C,H,W)",
         [&] { AvgPool2d<float>(2)(x44); }},
        {"flatten_start_dim", &shape_error, "flatten: axis 3 is out of range for shape (2,3)",
         [&] { Flatten<float>(3)(x23); }},
        {"softmax_axis", &shape_error, "softmax: axis 2 is out of range for shape (2,3)",
         [&] { Softmax<float>(2)(x23); }},
        {"lambda_empty_function", &invalid, "Lambda 'f': the function is empty", [] { Lambda<float>("f", nullptr); }},
        {"dropout_p_1", &invalid, "Dropout: p must be in [0, 1), got 1", [] { Dropout<float>(1.0); }},
        {"dropout_p_negative", &invalid, "Dropout: p must be in [0, 1), got -0.1", [] { Dropout<float>(-0.1); }},
        {"dropout_p_1.5", &invalid, "Dropout: p must be in [0, 1), got 1.5", [] { Dropout<float>(1.5); }},
        {"dropout_p_nan", &invalid, "Dropout: p must be in [0, 1), got nan", [] { Dropout<float>{kNaN}; }},
    });
}

BOOST_AUTO_TEST_CASE(sequential_mlp_module)
{
    Tape<float> t;
    auto x24 = t.constant(zeros({2, 4})), x25 = t.constant(zeros({2, 5}));
    Sequential<float> seq;
    seq.emplace<Linear<float>>(4, 3);
    seq.emplace<Linear<float>>(4, 2);
    MLP<float> mlp({4, 3, 2});
    check({
        {"sequential_null_layer", &invalid, "Sequential: layer 0 is a null module",
         [] { Sequential<float>().add(std::unique_ptr<Linear<float>>()); }},
        {"sequential_second_layer_mismatch", &shape_error, "Linear(4→2): expected input (B,4), got (2,3)",
         [&] { seq(x24); }},
        {"sequential_index_out_of_range", &out_of_range, "Sequential: layer index 5 is out of range (2 layers)",
         [&] { seq[5]; }},
        {"sequential_at_index_out_of_range", &out_of_range, "Sequential: layer index 2 is out of range (2 layers)",
         [&] { seq.at<Linear<float>>(2); }},
        {"sequential_at_wrong_type", &invalid, "Sequential::at: layer 1 is Linear(4→2), not a xgrad::nn::Conv2d<float>",
         [&] { seq.at<Conv2d<float>>(1); }},
        {"mlp_at_wrong_type", &invalid, "Sequential::at: layer 1 is ReLU, not a xgrad::nn::Linear<float>",
         [&] { mlp.at<Linear<float>>(1); }},
        {"mlp_at_index_out_of_range", &out_of_range, "Sequential: layer index 3 is out of range (3 layers)",
         [&] { mlp.at<ReLU<float>>(3); }},
        {"mlp_one_size", &invalid, "MLP: sizes (784): needs at least an input and an output size",
         [] { MLP<float>({784}); }},
        {"mlp_no_sizes", &invalid, "MLP: sizes (): needs at least an input and an output size", [] { MLP<float>({}); }},
        {"mlp_zero_size", &invalid, "MLP: sizes (4,0,2): every size must be at least 1", [] { MLP<float>({4, 0, 2}); }},
        {"mlp_wrong_input", &shape_error, "Linear(4→3): expected input (B,4), got (2,5)", [&] { mlp(x25); }},
        {"module_duplicate_parameter", &logic_error, "register_parameter: duplicate parameter name 'w'",
         [] { Registrar(0); }},
        {"module_duplicate_child", &logic_error, "register_module: duplicate module name 'a'", [] { Registrar(1); }},
        {"module_null_child", &invalid, "register_module: module 'a' is null", [] { Registrar(2); }},
    });
    // A failed forward leaves no scope open: the next one works.
    BOOST_TEST((mlp(t.constant(zeros({2, 4}))).shape() == Shape{2, 2}));
}

BOOST_AUTO_TEST_CASE(optimizer_options)
{
    Parameter<float> p(zeros({3}), "w"), q(zeros({2}), "b");
    auto sgd = [&](SGDOptions o) { return [&p, o] { SGD<float>({&p}, o); }; };
    auto adam = [&](std::function<void(AdamOptions&)> set) {
        return [&p, set] {
            AdamOptions o(1e-3);
            set(o);
            Adam<float>({&p}, o);
        };
    };
    check({
        {"sgd_negative_lr", &invalid, "SGD: lr must be a finite number >= 0, got -0.1", sgd({-0.1})},
        {"sgd_nan_lr", &invalid, "SGD: lr must be a finite number >= 0, got nan", sgd({kNaN})},
        {"sgd_inf_lr", &invalid, "SGD: lr must be a finite number >= 0, got inf", sgd({kInf})},
        {"sgd_negative_momentum", &invalid, "SGD: momentum must be a finite number >= 0, got -0.9", sgd(SGDOptions(0.1).momentum(-0.9))},
        {"sgd_negative_weight_decay", &invalid, "SGD: weight_decay must be a finite number >= 0, got -1",
         sgd(SGDOptions(0.1).weight_decay(-1))},
        {"sgd_nesterov_without_momentum", &invalid, "SGD: nesterov needs momentum > 0, got 0", sgd(SGDOptions(0.1).nesterov(true))},
        {"sgd_null_parameter", &invalid, "SGD: parameter 1 is null", [&] { SGD<float>({&p, nullptr}, 0.1); }},
        {"sgd_repeated_parameter", &invalid, "SGD: parameter 2 ('w') is the same as parameter 0; list each parameter once",
         [&] { SGD<float>({&p, &q, &p}, 0.1); }},
        {"adam_negative_lr", &invalid, "Adam: lr must be a finite number >= 0, got -1", adam([](auto& o) { o.lr(-1); })},
        {"adam_beta1_1", &invalid, "Adam: beta1 must be in [0, 1), got 1", adam([](auto& o) { o.beta1(1); })},
        {"adam_beta1_nan", &invalid, "Adam: beta1 must be in [0, 1), got nan", adam([](auto& o) { o.beta1(kNaN); })},
        {"adam_beta2_negative", &invalid, "Adam: beta2 must be in [0, 1), got -0.5",
         adam([](auto& o) { o.beta2(-0.5); })},
        {"adam_eps_0", &invalid, "Adam: eps must be a finite number > 0, got 0", adam([](auto& o) { o.eps(0); })},
        {"adam_eps_negative", &invalid, "Adam: eps must be a finite number > 0, got -1e-08",
         adam([](auto& o) { o.eps(-1e-8); })},
        {"adam_weight_decay_nan", &invalid, "Adam: weight_decay must be a finite number >= 0, got nan",
         adam([](auto& o) { o.weight_decay(kNaN); })},
        {"adam_null_parameter", &invalid, "Adam: parameter 0 is null", [] { Adam<float>({nullptr}, {}); }},
        {"adamw_nan_lr", &invalid, "AdamW: lr must be a finite number >= 0, got nan",
         [&] { AdamW<float>({&p}, AdamOptions(kNaN).weight_decay(0.01)); }},
        {"set_lr_negative", &invalid, "set_lr: lr must be a finite number >= 0, got -1",
         [&] { SGD<float>({&p}, 0.1).set_lr(-1); }},
        {"set_lr_nan", &invalid, "set_lr: lr must be a finite number >= 0, got nan",
         [&] { Adam<float>({&p}, {}).set_lr(kNaN); }},
    });
}

BOOST_AUTO_TEST_CASE(optimizer_after_parameter_changed_shape)
{
    Parameter<float> p(zeros({3}), "w");
    Adam<float> adam({&p}, {});
    SGD<float> sgd({&p}, SGDOptions(0.1).momentum(0.9));
    p.value() = zeros({2, 3});
    const Tensor<float> before = p.value();
    check({
        {"adam_step", &logic_error,
         "Adam: parameter 0 ('w') has shape (2,3) but the optimizer's state for it has shape (3); make a new optimizer "
         "after changing a parameter's shape",
         [&] { adam.step(); }},
        {"sgd_momentum_step", &logic_error,
         "SGD: parameter 0 ('w') has shape (2,3) but the optimizer's state for it has shape (3); make a new optimizer "
         "after changing a parameter's shape",
         [&] { sgd.step(); }},
    });
    BOOST_TEST((p.value() == before));  // nothing was updated
    BOOST_TEST(adam.steps() == 0u);
}

BOOST_AUTO_TEST_CASE(lr_schedules)
{
    check({
        {"steplr_step_size_0", &invalid, "StepLR: step_size must be at least 1, got 0", [] { StepLR(0.1, 0); }},
        {"steplr_step_size_negative", &invalid, "StepLR: step_size must be at least 1, got -3", [] { StepLR(0.1, -3); }},
        {"steplr_negative_base", &invalid, "StepLR: base_lr must be a finite number >= 0, got -0.1",
         [] { StepLR(-0.1, 3); }},
        {"steplr_nan_gamma", &invalid, "StepLR: gamma must be a finite number >= 0, got nan",
         [] { StepLR(0.1, 3, kNaN); }},
        {"steplr_negative_epoch", &out_of_range, "StepLR: epoch -1 is negative", [] { StepLR(0.1, 3).lr(-1); }},
        {"cosine_total_0", &invalid, "CosineLR: total_epochs must be at least 1, got 0", [] { CosineLR(0.1, 0); }},
        {"cosine_inf_base", &invalid, "CosineLR: base_lr must be a finite number >= 0, got inf",
         [] { CosineLR(kInf, 10); }},
        {"cosine_negative_min", &invalid, "CosineLR: min_lr must be a finite number >= 0, got -0.01",
         [] { CosineLR(0.1, 10, -0.01); }},
        {"cosine_negative_epoch", &out_of_range, "CosineLR: epoch -2 is negative", [] { CosineLR(0.1, 10).lr(-2); }},
    });
}

BOOST_AUTO_TEST_CASE(initializers)
{
    Tensor<float> w = zeros({2, 3});
    init::Rng rng(1);
    check({
        {"kaiming_uniform_fan_0", &invalid, "kaiming_uniform: fan_in must be at least 1, got 0",
         [&] { init::kaiming_uniform(w, 0, rng); }},
        {"kaiming_normal_fan_0", &invalid, "kaiming_normal: fan_in must be at least 1, got 0",
         [&] { init::kaiming_normal(w, 0, rng); }},
        {"torch_default_fan_0", &invalid, "torch_default: fan_in must be at least 1, got 0",
         [&] { init::torch_default(w, 0, rng); }},
        {"xavier_fans_0", &invalid, "xavier_uniform: fan_in + fan_out must be at least 1, got 0 + 0",
         [&] { init::xavier_uniform(w, 0, 0, rng); }},
        {"xavier_negative_gain", &invalid, "xavier_uniform: gain must be a finite number >= 0, got -1",
         [&] { init::xavier_uniform(w, 2, 3, rng, -1); }},
        {"uniform_reversed_bounds", &invalid, "uniform: bounds [1, 0) must be finite, with lo <= hi and hi - lo finite",
         [&] { init::uniform(w, 1, 0, rng); }},
        {"uniform_infinite_bound", &invalid, "uniform: bounds [0, inf) must be finite, with lo <= hi and hi - lo finite",
         [&] { init::uniform(w, 0, kInf, rng); }},
        {"uniform_width_overflows", &invalid,
         "uniform: bounds [-1.79769e+308, 1.79769e+308) must be finite, with lo <= hi and hi - lo finite",
         [&] { init::uniform(w, -DBL_MAX, DBL_MAX, rng); }},
    });
    BOOST_TEST((w == zeros({2, 3})));  // untouched
}

BOOST_AUTO_TEST_CASE(gradcheck_module_misuse)
{
    Linear<double> lin(3, 2, true, 1);
    Tape<double> other;
    auto foreign = other.variable(Tensor<double>{1.0});
    Lambda<double> constant_out("Const", [](const Var<double>& x) { return x.tape().constant(Tensor<double>{1.0}); });
    const Tensor<double> x23 = xt::ones<double>({2, 3}), x24 = xt::ones<double>({2, 4});
    check({
        {"wrong_input_shape", &shape_error, "Linear(3→2): expected input (B,3), got (2,4)",
         [&] { gradcheck_module(lin, x24); }},
        {"loss_on_another_tape", &logic_error, "xgrad: backward: Var belongs to another tape",
         [&] { gradcheck_module(lin, x23, [&](const Var<double>&) { return foreign; }); }},
        {"loss_returns_empty_var", &logic_error, "xgrad: use of an empty Var (default-constructed, never assigned)",
         [&] { gradcheck_module(lin, x23, [](const Var<double>&) { return Var<double>(); }); }},
        {"output_depends_on_nothing", &logic_error,
         "xgrad: backward(): the output ('constant') does not depend on anything that requires grad (use "
         "tape.variable() or tape.param() for the inputs)",
         [&] { gradcheck_module(constant_out, x23); }},
    });
    // Still usable after the failures.
    BOOST_TEST(gradcheck_module(lin, x23).ok);
}
