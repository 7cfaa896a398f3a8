#pragma once
// The five source documents' derivations as the documents write them (their mistakes kept as the
// formulas they use, document 003's worked example as its printed numbers), each run through
// xgrad::diagnose against the same network on the tape. examples/check_gradients prints the
// reports; tests/reference/test_documents.cpp asserts what diagnose finds. docs/sources.md lists it.
#include <functional>
#include <string>
#include <vector>

#include "xgrad/diagnose.hpp"

namespace xgrad::reference {

struct DocumentDiagnosis {
    std::string number;  ///< "000" … "004"
    std::string name;    ///< the network's name in docs/sources.md (with a suffix for a further run)
    std::string title;   ///< what is checked, one line
    std::function<DiagnosisReport()> run;
};

/// Every document whose derivation is reproduced, in number order. A document with several
/// independent mistakes (000, 002) is run once per mistake, each run under its own name with the
/// document's number, the one formula as written and the others correct; 002 is also run with all
/// its printed equations at once (cnn_sigmoid_avgpool_as_written).
std::vector<DocumentDiagnosis> document_diagnoses();

}  // namespace xgrad::reference
