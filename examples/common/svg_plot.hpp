#pragma once
// A line chart written as a standalone SVG file: no plotting program needed. Used by the
// second-order examples (hessian_spectrum, newton_cg) for their figures.
#include <string>
#include <vector>

namespace xgrad::examples {

struct PlotSeries {
    std::string name;
    std::vector<double> x, y;
    bool dashed = false;
    bool markers = true;  ///< a dot at every point (drawn only when the series has at most 80 points)
};

struct PlotSpec {
    std::string title, xlabel, ylabel;
    bool log_y = false;  ///< logarithmic y axis (non-positive values are left out)
    std::vector<PlotSeries> series;
    int width = 760, height = 460;
};

/// Writes the chart to `path` (std::runtime_error naming the path if it cannot be written).
void write_svg(const std::string& path, const PlotSpec& spec);

}  // namespace xgrad::examples
