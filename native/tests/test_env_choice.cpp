// env_choice (native/src/core/env_choice.h), the parser of the environment variables that pick kernel
// variants and switches: unset or empty gives the default, each listed name its value, anything else an
// INVALID_ARGUMENT error naming the variable, the accepted names and what was set. Every test sets the
// variable through ScopedEnv, which restores the environment afterwards.
#include <gtest/gtest.h>

#include <string>

#include "core/env_choice.h"
#include "support.h"

namespace {

constexpr const char * kVariable = "MAMBA_TEST_ENV_CHOICE";

enum class Pick { Fallback, Alpha, Beta, Gamma };

constexpr mamba::EnvChoice<Pick> kPicks[] = {{"alpha", Pick::Alpha}, {"beta", Pick::Beta}, {"gamma", Pick::Gamma}};

Pick read() { return mamba::env_choice(kVariable, kPicks, Pick::Fallback); }

TEST(EnvChoice, UnsetGivesTheDefault) {
    const mt::ScopedEnv scoped(kVariable, nullptr);
    EXPECT_EQ(read(), Pick::Fallback);
}

TEST(EnvChoice, EmptyGivesTheDefault) {
    const mt::ScopedEnv scoped(kVariable, "");
    EXPECT_EQ(read(), Pick::Fallback);
}

TEST(EnvChoice, EachListedNameGivesItsValue) {
    for (const auto & choice : kPicks) {
        SCOPED_TRACE(choice.name);
        const mt::ScopedEnv scoped(kVariable, choice.name);
        EXPECT_EQ(read(), choice.value);
    }
}

TEST(EnvChoice, BooleanSwitchTakesZeroAndOne) {
    // The form of MAMBA_CUDA_PDL and MAMBA_CUDA_TRACE.
    constexpr mamba::EnvChoice<bool> on_off[] = {{"0", false}, {"1", true}};
    const char * const variable = "MAMBA_TEST_ENV_SWITCH";
    {
        const mt::ScopedEnv scoped(variable, "0");
        EXPECT_FALSE(mamba::env_choice(variable, on_off, true));
    }
    {
        const mt::ScopedEnv scoped(variable, "1");
        EXPECT_TRUE(mamba::env_choice(variable, on_off, false));
    }
    const mt::ScopedEnv scoped(variable, "2");
    EXPECT_THROW(mamba::env_choice(variable, on_off, true), mamba::Error);
}

// A name that is not listed, including a near miss in case or spacing, is an error, never the default.
TEST(EnvChoice, UnlistedNameIsAnInvalidArgumentNamingVariableAndChoices) {
    for (const char * wrong : {"delta", "Alpha", "alpha ", " beta", "alphabeta"}) {
        SCOPED_TRACE(std::string("value '") + wrong + "'");
        const mt::ScopedEnv scoped(kVariable, wrong);
        try {
            read();
            ADD_FAILURE() << "no error for an unlisted name";
        } catch (const mamba::Error & e) {
            EXPECT_EQ(e.status(), MAMBA_STATUS_INVALID_ARGUMENT);
            const std::string message = e.what();
            EXPECT_EQ(message, std::string(kVariable) + " must be one of alpha, beta, gamma (or unset), not '" + wrong + "'");
        }
    }
}

TEST(EnvChoice, ScopedEnvRestoresWhatWasSet) {
    const mt::ScopedEnv outer(kVariable, "beta");
    {
        const mt::ScopedEnv inner(kVariable, "bogus");
        EXPECT_THROW(read(), mamba::Error);
    }
    EXPECT_EQ(read(), Pick::Beta);
    {
        const mt::ScopedEnv inner(kVariable, nullptr);
        EXPECT_EQ(read(), Pick::Fallback);
    }
    EXPECT_EQ(read(), Pick::Beta);
}

}  // namespace
