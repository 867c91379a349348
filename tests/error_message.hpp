// Small helpers the tests share:
//   message_of<E>(f)      the message of the exception of type E that f() throws; a test
//                         failure (and "") when f() throws something else or nothing
//   contains(text, part)  whether part occurs in text
//   sci(x)                x as "%.3e", for measured figures recorded in the XML report
#pragma once

#include <gtest/gtest.h>

#include <cstdio>
#include <exception>
#include <string>

namespace tether::testing {

inline bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

inline std::string sci(double x) {
  char buffer[32];
  std::snprintf(buffer, sizeof buffer, "%.3e", x);
  return buffer;
}

template <class E, class F>
std::string message_of(F&& f) {
  try {
    f();
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "threw the wrong type: " << e.what();
    return "";
  }
  ADD_FAILURE() << "did not throw";
  return "";
}

}  // namespace tether::testing
