#include "svg_plot.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <stdexcept>

namespace xgrad::examples {

namespace {

std::string esc(const std::string& s)
{
    std::string r;
    for (char c : s) {
        if (c == '<') r += "&lt;";
        else if (c == '>') r += "&gt;";
        else if (c == '&') r += "&amp;";
        else if (c == '"') r += "&quot;";
        else r += c;
    }
    return r;
}

/// Ticks at 1, 2 or 5 × 10^k covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6)
{
    const double span = hi - lo;
    const double raw = span / target;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    double step = mag;
    for (double m : {1.0, 2.0, 5.0, 10.0})
        if (raw <= m * mag) {
            step = m * mag;
            break;
        }
    std::vector<double> t;
    for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * span; v += step) t.push_back(std::abs(v) < 1e-12 * step ? 0 : v);
    return t;
}

std::string tick_label(double v)
{
    if (v == 0) return "0";
    const double a = std::abs(v);
    if (a >= 1e5 || a < 1e-3) return fmt::format("{:.0e}", v);
    return fmt::format("{:g}", v);
}

const char* kColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

}  // namespace

void write_svg(const std::string& path, const PlotSpec& spec)
{
    const double W = spec.width, H = spec.height;
    const double left = 78, right = 24, top = 40, bottom = 54;
    const double pw = W - left - right, ph = H - top - bottom;
    // Data range.
    double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
    auto usable = [&](double y) { return std::isfinite(y) && (!spec.log_y || y > 0); };
    for (const auto& s : spec.series)
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !usable(s.y[i])) continue;
            const double y = spec.log_y ? std::log10(s.y[i]) : s.y[i];
            x0 = std::min(x0, s.x[i]), x1 = std::max(x1, s.x[i]);
            y0 = std::min(y0, y), y1 = std::max(y1, y);
        }
    if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
    if (x1 == x0) x0 -= 0.5, x1 += 0.5;
    if (y1 == y0) y0 -= 0.5, y1 += 0.5;
    if (!spec.log_y) {
        const double pad = 0.05 * (y1 - y0);
        y0 -= pad, y1 += pad;
    } else {
        const double pad = 0.03 * (y1 - y0);
        y0 -= pad, y1 += pad;
    }
    auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
    auto py = [&](double y) { return top + (1 - ((spec.log_y ? std::log10(y) : y) - y0) / (y1 - y0)) * ph; };

    std::ofstream f(path);
    if (!f) throw std::runtime_error("cannot write the plot '" + path + "'");
    f << fmt::format(R"~(<svg xmlns="http://www.w3.org/2000/svg" width="{}" height="{}" viewBox="0 0 {} {}" font-family="sans-serif" font-size="12">)~",
                     W, H, W, H)
      << "\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    f << fmt::format(R"~(<text x="{}" y="22" text-anchor="middle" font-size="15">{}</text>)~", W / 2, esc(spec.title)) << "\n";
    // Grid and ticks.
    for (double t : nice_ticks(x0, x1)) {
        const double X = px(t);
        f << fmt::format(R"~(<line x1="{:.1f}" y1="{}" x2="{:.1f}" y2="{}" stroke="#e4e4e4"/>)~", X, top, X, top + ph) << "\n";
        f << fmt::format(R"~(<text x="{:.1f}" y="{}" text-anchor="middle">{}</text>)~", X, top + ph + 17, tick_label(t)) << "\n";
    }
    std::vector<double> yt;
    if (spec.log_y) {
        const double lo = std::floor(y0), hi = std::ceil(y1);
        const bool dense = hi - lo <= 3;
        for (double e = lo; e <= hi; ++e)
            for (double m : dense ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
                const double v = m * std::pow(10.0, e);
                if (std::log10(v) >= y0 && std::log10(v) <= y1) yt.push_back(v);
            }
    } else {
        yt = nice_ticks(y0, y1);
    }
    for (double t : yt) {
        const double Y = py(t);
        f << fmt::format(R"~(<line x1="{}" y1="{:.1f}" x2="{}" y2="{:.1f}" stroke="#e4e4e4"/>)~", left, Y, left + pw, Y) << "\n";
        f << fmt::format(R"~(<text x="{}" y="{:.1f}" text-anchor="end">{}</text>)~", left - 6, Y + 4, tick_label(t)) << "\n";
    }
    f << fmt::format(R"~(<rect x="{}" y="{}" width="{}" height="{}" fill="none" stroke="#444"/>)~", left, top, pw, ph) << "\n";
    f << fmt::format(R"~(<text x="{}" y="{}" text-anchor="middle">{}</text>)~", left + pw / 2, H - 12, esc(spec.xlabel)) << "\n";
    f << fmt::format(R"~(<text x="18" y="{}" text-anchor="middle" transform="rotate(-90 18 {})">{}</text>)~", top + ph / 2,
                     top + ph / 2, esc(spec.ylabel))
      << "\n";
    // Series, with the legend (top right) on a white box.
    if (!spec.series.empty())
        f << fmt::format(R"~(<rect x="{}" y="{}" width="186" height="{}" fill="white" fill-opacity="0.85" stroke="#bbb"/>)~",
                         left + pw - 198, top + 4, 17 * double(spec.series.size()) + 6)
          << "\n";
    for (std::size_t k = 0; k < spec.series.size(); ++k) {
        const auto& s = spec.series[k];
        const char* color = kColors[k % (sizeof kColors / sizeof kColors[0])];
        std::string pts;
        std::size_t n = 0;
        for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
            if (!std::isfinite(s.x[i]) || !usable(s.y[i])) continue;
            pts += fmt::format("{:.1f},{:.1f} ", px(s.x[i]), py(s.y[i]));
            ++n;
        }
        f << fmt::format(R"~(<polyline fill="none" stroke="{}" stroke-width="1.8"{} points="{}"/>)~", color,
                         s.dashed ? " stroke-dasharray=\"6 4\"" : "", pts)
          << "\n";
        if (s.markers && n <= 80)
            for (std::size_t i = 0; i < s.x.size() && i < s.y.size(); ++i)
                if (std::isfinite(s.x[i]) && usable(s.y[i]))
                    f << fmt::format(R"~(<circle cx="{:.1f}" cy="{:.1f}" r="2.6" fill="{}"/>)~", px(s.x[i]), py(s.y[i]), color) << "\n";
        // Legend entry (top right).
        const double ly = top + 16 + 17 * double(k), lx = left + pw - 190;
        f << fmt::format(R"~(<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="2"{}/>)~", lx, ly - 4, lx + 24, ly - 4,
                         color, s.dashed ? " stroke-dasharray=\"6 4\"" : "")
          << "\n";
        f << fmt::format(R"~(<text x="{}" y="{}">{}</text>)~", lx + 30, ly, esc(s.name)) << "\n";
    }
    f << "</svg>\n";
    if (!f) throw std::runtime_error("cannot write the plot '" + path + "'");
}

}  // namespace xgrad::examples
