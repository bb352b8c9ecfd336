// Named choices read from environment variables (kernel variants and switches the benchmark and the tests
// flip): unset or empty gives the default, a listed name its value, anything else an INVALID_ARGUMENT error
// that names the variable and the accepted values, so a typo never silently measures the default.
#pragma once

#include <cstdlib>
#include <cstring>
#include <string>

#include "core/error.h"

namespace mamba {

template <class T>
struct EnvChoice {
    const char * name;
    T value;
};

template <class T, size_t N>
T env_choice(const char * variable, const EnvChoice<T> (&choices)[N], T fallback) {
    const char * set = std::getenv(variable);
    if (set == nullptr || set[0] == '\0') return fallback;
    std::string accepted;
    for (const EnvChoice<T> & c : choices) {
        if (std::strcmp(set, c.name) == 0) return c.value;
        accepted += accepted.empty() ? "" : ", ";
        accepted += c.name;
    }
    fail_argument(variable, " must be one of ", accepted, " (or unset), not '", set, "'");
}

}  // namespace mamba
