#include <unistd.h>

#include <iostream>
#include <tether/core/callbacks.hpp>
#include <tether/core/errors.hpp>

namespace tether::callbacks {

ProgressBar::ProgressBar() : enabled_(isatty(STDERR_FILENO) != 0) {}

void ProgressBar::on_begin(int max_iterations) { total_ = max_iterations; }

bool ProgressBar::on_iteration(const IterationRecord& r) {
  if (!enabled_ || total_ <= 0) return true;
  const int width = 30;
  const int done = static_cast<int>(static_cast<long>(r.iteration + 1) * width / total_);
  std::fprintf(stderr, "\r[%-*.*s] %d/%d loss %.6g best %.6g residual %.2e", width,
               done < width ? done : width, "##############################", r.iteration + 1,
               total_, r.loss, r.best_loss, r.constraint_residual);
  std::fflush(stderr);
  return true;
}

void ProgressBar::on_end(const History&, StopReason reason) {
  if (enabled_) std::fprintf(stderr, "\n%s\n", to_string(reason));
}

CsvHistory::CsvHistory(const std::string& path) : file_(path), out_(&file_) {
  require(file_.good(), "CsvHistory: cannot open '", path, "' for writing");
}

CsvHistory::CsvHistory(std::ostream& out) : out_(&out) {}

void CsvHistory::on_begin(int) {
  *out_ << "iteration,loss,best_loss,constraint_residual,step_seconds,temperature,"
           "retraction_passes,error\n";
}

bool CsvHistory::on_iteration(const IterationRecord& r) {
  out_->precision(17);
  *out_ << r.iteration << ',' << r.loss << ',' << r.best_loss << ',' << r.constraint_residual << ','
        << r.step_seconds << ',' << r.temperature << ',' << r.retraction_passes << ','
        << r.error << '\n';
  return true;
}

bool EarlyStop::on_iteration(const IterationRecord& r) {
  if (r.best_loss < best_ - min_delta) {
    best_ = r.best_loss;
    since_best_ = 0;
  } else {
    ++since_best_;
  }
  return since_best_ < patience;
}

}  // namespace tether::callbacks
