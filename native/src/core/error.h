// Internal error handling: C++ code throws mamba::Error; the C ABI edge turns it into a status and
// a thread-local message. Nothing thrown ever crosses the boundary.
#pragma once

#include <exception>
#include <new>
#include <sstream>
#include <string>
#include <utility>

#include "mamba/mamba.h"

namespace mamba {

class Error : public std::exception {
public:
    Error(mamba_status status, std::string message) : status_(status), message_(std::move(message)) {}
    mamba_status status() const noexcept { return status_; }
    const char * what() const noexcept override { return message_.c_str(); }

private:
    mamba_status status_;
    std::string message_;
};

// Concatenates its arguments with operator<< into a message.
template <class... Args>
std::string cat(Args &&... args) {
    std::ostringstream out;
    (out << ... << std::forward<Args>(args));
    return out.str();
}

template <class... Args>
[[noreturn]] void fail(mamba_status status, Args &&... args) {
    throw Error(status, cat(std::forward<Args>(args)...));
}

template <class... Args>
[[noreturn]] void fail_argument(Args &&... args) {
    fail(MAMBA_STATUS_INVALID_ARGUMENT, std::forward<Args>(args)...);
}

template <class T>
void check_not_null(const char * name, const T * p) {
    if (p == nullptr) fail_argument("argument '", name, "' is null");
}

void set_last_error(const std::string & message);
void clear_last_error();

// Ends a graph capture open on this thread after any failing call (api/graph.cpp), so that a failed
// call never leaves a half-recorded graph or a stream stuck in capture mode.
void abandon_capture_after_failure() noexcept;

template <class F>
mamba_status guarded_body(const char * function, F && body) noexcept {
    try {
        body();
        return MAMBA_STATUS_OK;
    } catch (const Error & e) {
        set_last_error(cat(function, ": ", e.what()));
        return e.status();
    } catch (const std::bad_alloc &) {
        set_last_error(cat(function, ": out of host memory"));
        return MAMBA_STATUS_OUT_OF_MEMORY;
    } catch (const std::exception & e) {
        set_last_error(cat(function, ": internal error: ", e.what()));
        return MAMBA_STATUS_INTERNAL;
    } catch (...) {
        set_last_error(cat(function, ": internal error: unknown exception"));
        return MAMBA_STATUS_INTERNAL;
    }
}

// Runs `body` at the C ABI edge: maps every exception to a status and records "<function>: <message>".
template <class F>
mamba_status guarded(const char * function, F && body) noexcept {
    const mamba_status status = guarded_body(function, std::forward<F>(body));
    if (status != MAMBA_STATUS_OK) abandon_capture_after_failure();
    return status;
}

}  // namespace mamba

// Declares the function name once for the argument checks and the error prefix.
#define MAMBA_GUARDED(...) ::mamba::guarded(__func__, [&]() __VA_ARGS__)
