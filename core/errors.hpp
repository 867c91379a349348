// Named error types. Every refusal of bad input names the argument and the bound it broke.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace tether {

/// Base of every exception tether throws.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// An argument outside its documented domain (non-positive step, lambda < 0, N = 0, ...).
class InvalidArgumentError : public Error {
 public:
  using Error::Error;
};

/// Shapes that do not agree (cost matrix vs. loss gradient, dimension mismatches).
class ShapeError : public InvalidArgumentError {
 public:
  using InvalidArgumentError::InvalidArgumentError;
};

/// A constraint set that is empty, e.g. a budget outside [sum of row minima, sum of row maxima].
class InfeasibleError : public InvalidArgumentError {
 public:
  using InvalidArgumentError::InvalidArgumentError;
};

/// NaN or Inf where a finite number is required, or an iteration that cannot proceed.
class NumericalError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <class... Parts>
std::string concat(const Parts&... parts) {
  std::ostringstream out;
  out.precision(17);
  (out << ... << parts);
  return out.str();
}
}  // namespace detail

/// Throws E with the concatenated message unless `condition` holds.
template <class E = InvalidArgumentError, class... Parts>
void require(bool condition, const Parts&... parts) {
  if (!condition) throw E(detail::concat(parts...));
}

}  // namespace tether
