#include <Eigen/Householder>
#include <algorithm>
#include <cmath>
#include <limits>
#include <tether/core/dense_qp.hpp>
#include <tether/core/errors.hpp>
#include <tether/core/lanes.hpp>
#include <tether/core/streaming_stores.hpp>
#include <tether/solvers/retain_projector.hpp>
#include <type_traits>

namespace tether {

bool RetainProjectorOptions::is_valid(std::string* why) const {
  auto fail = [&](const std::string& msg) {
    if (why) *why = msg;
    return false;
  };
  if (window < 1) return fail(detail::concat("window must be >= 1, got ", window));
  if (scope == RetainScope::kGlobal && !block_sizes.empty())
    return fail(detail::concat("block_sizes must be empty with global scope, got ",
                               block_sizes.size(), " blocks (use RetainScope::kBlockwise)"));
  if (scope == RetainScope::kBlockwise) {
    if (block_sizes.empty())
      return fail("block_sizes must name at least one block with blockwise scope, got none");
    for (std::size_t i = 0; i < block_sizes.size(); ++i)
      if (block_sizes[i] < 1)
        return fail(detail::concat("block_sizes[", i, "] must be >= 1, got ", block_sizes[i]));
  }
  if (!(kappa >= 0.0) || !std::isfinite(kappa))
    return fail(detail::concat("kappa must be finite and >= 0, got ", kappa));
  if (!(tau >= 0.0) || !std::isfinite(tau))
    return fail(detail::concat("tau must be finite and >= 0, got ", tau));
  if (!(beta >= 0.0) || !std::isfinite(beta))
    return fail(detail::concat("beta must be finite and >= 0, got ", beta));
  if (!(rank_tolerance >= 0.0 && rank_tolerance < 1.0))
    return fail(detail::concat("rank_tolerance must be in [0, 1), got ", rank_tolerance));
  if (!(kkt_tolerance > 0.0) || !std::isfinite(kkt_tolerance))
    return fail(detail::concat("kkt_tolerance must be finite and > 0, got ", kkt_tolerance));
  return true;
}

RetainProjector::RetainProjector(Index dimension, const RetainProjectorOptions& options)
    : dimension_(dimension), options_(options) {
  std::string why;
  require(options_.is_valid(&why), "RetainProjectorOptions: ", why);
  require(dimension_ >= 1, "RetainProjector: dimension must be >= 1, got ", dimension_);
  if (options_.scope == RetainScope::kGlobal) {
    block_offset_ = {0};
    block_size_ = {dimension_};
  } else {
    Index offset = 0;
    for (const Index n : options_.block_sizes) {
      block_offset_.push_back(offset);
      block_size_.push_back(n);
      offset += n;
    }
    require<ShapeError>(offset == dimension_, "RetainProjector: block_sizes sum to ", offset,
                        ", the dimension is ", dimension_);
  }
  const Index k = options_.window;
  raw_.resize(dimension_, k);
  factor_.resize(dimension_, k);
  tau_ = Eigen::MatrixXd::Zero(k, blocks());
  r_ = Eigen::MatrixXd::Zero(k, k * blocks());
  column_norm_ = Eigen::MatrixXd::Zero(k, blocks());
  rank_.assign(block_offset_.size(), 0);
  newest_kept_.assign(block_offset_.size(), false);
  work_.resize(dimension_);
  sqrt_h_.resize(dimension_);
  inv_sqrt_h_.resize(dimension_);
  if (options_.basis == RetainBasisPolicy::kFirstK) latest_.resize(dimension_);
  small_a_.resize(k);
  small_index_.resize(k);
}

void RetainProjector::check_vector(ConstVectorRef v, const char* who, const char* what) const {
  require<ShapeError>(v.size() == dimension_, "RetainProjector::", who, ": the ", what,
                      " has size ", v.size(), ", the dimension is ", dimension_);
  if (v.allFinite()) return;
  Index bad = 0;
  while (std::isfinite(v[bad])) ++bad;
  throw NumericalError(detail::concat("RetainProjector::", who, ": the ", what,
                                      " is NaN/Inf (entry ", bad, " = ", v[bad], ")"));
}

int RetainProjector::column_of(int age) const {
  const int k = options_.window;
  return (head_ - age + k) % k;
}

void RetainProjector::push(ConstVectorRef retain_gradient) {
  check_vector(retain_gradient, "push", "retain gradient");
  const int k = options_.window;
  if (options_.basis == RetainBasisPolicy::kFirstK) {
    latest_ = retain_gradient;
    if (count_ < k) {
      head_ = count_;
      raw_.col(head_) = retain_gradient;
      ++count_;
      stale_ = true;
    }
  } else {
    head_ = count_ == 0 ? 0 : (head_ + 1) % k;
    raw_.col(head_) = retain_gradient;
    count_ = std::min(count_ + 1, k);
    stale_ = true;
  }
  have_latest_ = true;
  ++pushes_;
}

void RetainProjector::accumulate(ConstVectorRef micro_batch_gradient, double weight) {
  check_vector(micro_batch_gradient, "accumulate", "micro-batch gradient");
  require(std::isfinite(weight), "RetainProjector::accumulate: weight must be finite, got ",
          weight);
  if (pending_.size() != dimension_) pending_.resize(dimension_);
  if (accumulated_ == 0)
    pending_ = weight * micro_batch_gradient;
  else
    pending_ += weight * micro_batch_gradient;
  ++accumulated_;
}

void RetainProjector::push_accumulated() {
  require(accumulated_ > 0,
          "RetainProjector::push_accumulated: no micro-batch gradient was accumulated since the "
          "last push");
  check_vector(pending_, "push_accumulated", "accumulated retain gradient");
  push(pending_);
  accumulated_ = 0;
}

void RetainProjector::clear() {
  count_ = 0;
  head_ = 0;
  pushes_ = 0;
  accumulated_ = 0;
  have_latest_ = false;
  stale_ = true;
}

ConstVectorRef RetainProjector::latest() const {
  require(have_latest_, "RetainProjector::latest: no retain gradient was pushed (empty window)");
  if (options_.basis == RetainBasisPolicy::kFirstK) return latest_;
  return raw_.col(head_);
}

void RetainProjector::set_metric(ConstVectorRef h) {
  require<ShapeError>(h.size() == dimension_, "RetainProjector::set_metric: h has size ", h.size(),
                      ", the dimension is ", dimension_);
  for (Index j = 0; j < dimension_; ++j)  // refuse before changing anything
    require(h[j] > 0.0 && std::isfinite(h[j]),
            "RetainProjector::set_metric: every h_j must be finite and > 0, got h[", j,
            "] = ", h[j]);
  for (Index j = 0; j < dimension_; ++j) {
    sqrt_h_[j] = std::sqrt(h[j]);
    inv_sqrt_h_[j] = 1.0 / sqrt_h_[j];
  }
  identity_ = false;
  stale_ = true;
}

void RetainProjector::set_identity_metric() {
  if (!identity_) stale_ = true;
  identity_ = true;
}

int RetainProjector::rank() {
  if (stale_) rebuild();
  int total = 0;
  for (const int r : rank_) total += r;
  return total;
}

int RetainProjector::rank(int block) {
  require(block >= 0 && block < blocks(), "RetainProjector::rank: block must be in [0, ", blocks(),
          "), got ", block);
  if (stale_) rebuild();
  return rank_[static_cast<std::size_t>(block)];
}

// Whitens the window into factor_ (newest first) and factors each block by Householder QR with
// column dropping: a right-looking QR that takes the candidates in order (newest first) and
// drops one whose residual below the current rank is <= rank_tolerance times its norm. Kept
// column r holds R(0:r, r) above and the reflector's essential part below row r; r_ keeps
// Q^T z_j for every column j, kept or dropped (the cone's constraint rows).
void RetainProjector::rebuild() {
  const int m = count_;
  for (int j = 0; j < m; ++j) {
    if (identity_)
      factor_.col(j) = raw_.col(column_of(j));
    else
      factor_.col(j) = raw_.col(column_of(j)).cwiseProduct(inv_sqrt_h_);
  }
  std::fill(rank_.begin(), rank_.end(), 0);
  std::fill(newest_kept_.begin(), newest_kept_.end(), false);
  stale_ = false;
  explicit_valid_ = false;
  null_space_uses_ = 0;
  const int k = options_.window;
  for (int b = 0; b < blocks(); ++b) {
    const Index o = block_offset_[b], n = block_size_[b];
    auto R = r_.middleCols(b * k, k);
    auto norms = column_norm_.col(b);
    for (int j = 0; j < m; ++j) norms[j] = factor_.col(j).segment(o, n).norm();
    int r = 0;
    for (int j = 0; j < m; ++j) {
      // Q^T z_j: the top r entries now; the rest is z_j's residual, dropped with z_j or turned
      // into beta e_r by its own reflector.
      R.col(j).setZero();
      R.col(j).head(r) = factor_.col(j).segment(o, r);
      const double residual = r < n ? factor_.col(j).segment(o + r, n - r).norm() : 0.0;
      if (!(residual > options_.rank_tolerance * norms[j]) || norms[j] == 0.0)
        continue;  // near-dependent on the newer gradients (or zero in this block): dropped
      if (j == 0) newest_kept_[b] = true;
      if (j != r) factor_.col(r).segment(o, n) = factor_.col(j).segment(o, n);
      double tau = 0.0, beta = 0.0;
      factor_.col(r).segment(o + r, n - r).makeHouseholderInPlace(tau, beta);
      factor_(o + r, r) = beta;
      R(r, j) = beta;
      tau_(r, b) = tau;
      // The trailing candidates, column by column: a dot and an axpy each (measured no slower
      // at d = 1e6 than a fused pass over all of them; Eigen's blocked
      // applyHouseholderOnTheLeft takes a heap temporary once a block exceeds its stack limit).
      if (tau != 0.0)
        for (int l = j + 1; l < m; ++l) reflect(b, r, factor_.col(l));
      ++r;
    }
    rank_[b] = r;
  }
}

// x <- H_i x = x - tau_i v_i (v_i^T x), v_i = (1, essential_i) on rows o+i .. o+n-1 of block b.
void RetainProjector::reflect(int b, int i, VectorRef x) const {
  const double tau = tau_(i, b);
  if (tau == 0.0) return;
  const Index o = block_offset_[b] + i, n = block_size_[b] - i;
  const auto v = factor_.col(i).segment(o + 1, n - 1);
  auto tail = x.segment(o + 1, n - 1);
  const double w = tau * (x[o] + v.dot(tail));
  x[o] -= w;
  tail -= w * v;
}

void RetainProjector::apply_qt(int b, VectorRef x) const {
  for (int i = 0; i < rank_[b]; ++i) reflect(b, i, x);
}

void RetainProjector::apply_q(int b, VectorRef x) const {
  for (int i = rank_[b] - 1; i >= 0; --i) reflect(b, i, x);
}

// The explicit basis serves the null-space projections from the third after a rebuild on
// (formed then): the first two go through the reflectors, which need no forming.
bool RetainProjector::use_explicit_basis() {
  if (++null_space_uses_ == 3 && !explicit_valid_) form_explicit_basis();
  return explicit_valid_;
}

// w: the whitened proposed step, projected through the reflectors; blocks of rank 0 are left
// alone.
void RetainProjector::project_null_space_reflectors(VectorRef w) const {
  for (int b = 0; b < blocks(); ++b) {
    const int r = rank_[b];
    if (r == 0) continue;
    apply_qt(b, w);  // w = Q^T w0
    w.segment(block_offset_[b], r).setZero();
    apply_q(b, w);  // w = Q [0; tail]: the normal part
  }
}

// Column j of Q_b is H_0 .. H_j e_j: reflectors after j leave e_j alone (they act on rows > j).
constexpr Index kExplicitChunk = 8192;  // rows per chunk of the explicit-basis passes

void RetainProjector::form_explicit_basis() {
  if (explicit_q_.rows() != dimension_) {
    explicit_q_.resize(dimension_, options_.window);
    Index most_chunks = 1;
    for (const Index n : block_size_)
      most_chunks = std::max(most_chunks, (n + kExplicitChunk - 1) / kExplicitChunk);
    chunk_sums_.resize(options_.window + 2, most_chunks);
  }
  for (int b = 0; b < blocks(); ++b) {
    const Index o = block_offset_[b], n = block_size_[b];
    for (int j = 0; j < rank_[b]; ++j) {
      auto column = explicit_q_.col(j);
      column.segment(o, n).setZero();
      column[o + j] = 1.0;
      for (int i = j; i >= 0; --i) reflect(b, i, column);
    }
  }
  explicit_valid_ = true;
}

namespace {

constexpr Index kStrip = 512;  // rows of a chunk whitened at a time (into an L1 strip)

// w[i] = x[i] * (sign * scale[i]) (scale == nullptr: x[i] * sign) for i < len: the same
// operations, and so the same bits, as -(x .* s) and x .* s of the unfused form. Computed in
// double whatever In and Out (float gradients are read exactly; a float result is the double
// one rounded).
template <class In, class Out>
void scale_strip(const In* x, const double* scale, double sign, Index len, Out* w) {
  if (scale == nullptr)
    for (Index i = 0; i < len; ++i) w[i] = static_cast<Out>(static_cast<double>(x[i]) * sign);
  else
    for (Index i = 0; i < len; ++i)
      w[i] = static_cast<Out>(static_cast<double>(x[i]) * (sign * scale[i]));
}

// True when x[0..len) is finite (branch-free: it vectorises).
template <class T>
bool finite_strip(const T* x, Index len) {
  constexpr T kMax = std::numeric_limits<T>::max();
  unsigned ok = 1;
  for (Index i = 0; i < len; ++i) ok &= (x[i] <= kMax) & (x[i] >= -kMax);
  return ok != 0;
}

// The two kernels below take the basis columns G at a time (G = 4, then the rest), so that a
// block of lanes loads each of G columns once and w once for G products (or G updates), the
// partial results in registers: about 2.5 times fewer loads and stores than column by column.
// Every column's operations are the same whatever the grouping, so the bits do not depend on it.
constexpr int kGroup = 4;

// out[g] += sum_i q_g[i] w[i], i < n, g < G (q_g = q + g ld), in lanes (core/lanes.hpp): one
// fixed order of additions per column.
template <int G>
void add_dots_in_lanes(const double* q, Index ld, const double* w, Index n, double* out) {
  constexpr int L = lanes::kLanes;
  double acc[G][L] = {};
  const Index full = n - n % L;
  for (Index i = 0; i < full; i += L) {
    TETHER_LANES
    for (int l = 0; l < L; ++l) {
      const double wl = w[i + l];
      for (int g = 0; g < G; ++g) acc[g][l] += q[g * ld + i + l] * wl;
    }
  }
  for (Index i = full; i < n; ++i)
    for (int g = 0; g < G; ++g) acc[g][i - full] += q[g * ld + i] * w[i];
  for (int g = 0; g < G; ++g) out[g] += lanes::total(acc[g]);
}

// out[k] += q_k . w for k < r (out has r entries).
void add_dots(const double* q, Index ld, int r, const double* w, Index n, double* out) {
  int k = 0;
  for (; k + kGroup <= r; k += kGroup) add_dots_in_lanes<kGroup>(q + k * ld, ld, w, n, out + k);
  switch (r - k) {
    case 3:
      add_dots_in_lanes<3>(q + k * ld, ld, w, n, out + k);
      break;
    case 2:
      add_dots_in_lanes<2>(q + k * ld, ld, w, n, out + k);
      break;
    case 1:
      add_dots_in_lanes<1>(q + k * ld, ld, w, n, out + k);
      break;
    default:
      break;
  }
}

// sum_i w[i]^2 in lanes.
double squared_norm_in_lanes(const double* w, Index n) {
  double out = 0.0;
  add_dots_in_lanes<1>(w, 0, w, n, &out);
  return out;
}

// w[i] -= q_g[i] c[g] for g = 0, .., G - 1 in turn, i < n.
template <int G>
void subtract_group(const double* q, Index ld, const double* c, Index n, double* __restrict__ w) {
  for (Index i = 0; i < n; ++i) {
    double x = w[i];
    for (int g = 0; g < G; ++g) x -= q[g * ld + i] * c[g];
    w[i] = x;
  }
}

// w[i] -= sum_k q_k[i] c[k], k = 0, 1, .., r - 1 in turn (q_k = q + k * ld), i < n.
void subtract_combination(const double* q, Index ld, const double* c, int r, Index n, double* w) {
  int k = 0;
  for (; k + kGroup <= r; k += kGroup) subtract_group<kGroup>(q + k * ld, ld, c + k, n, w);
  switch (r - k) {
    case 3:
      subtract_group<3>(q + k * ld, ld, c + k, n, w);
      break;
    case 2:
      subtract_group<2>(q + k * ld, ld, c + k, n, w);
      break;
    case 1:
      subtract_group<1>(q + k * ld, ld, c + k, n, w);
      break;
    default:
      break;
  }
}

}  // namespace

// For each column x of `in` (m columns, `in` may be `out`), on every block b of rank r > 0:
//   w = x .* whiten,  w <- w - Q_b (Q_b^T w)  (repeated when the first removes most of w),
//   out = w .* unwhiten;
// on the rows of rank-0 blocks out = (x .* whiten) .* unwhiten, or out = x (copy_unprojected).
// The scalings are applied as the rows are read and written, so a column costs two sweeps over
// x and Q (three with the repeat) and one write: Q^T w by chunks of rows on threads (partial
// sums per chunk, added in chunk order), then the subtraction. A chunk is whitened a strip at a
// time into L1, strip by strip, all the columns of a strip in turn (its rows of Q read from
// memory once for all of them; 10-25% faster than column by column at d = 1e4..1e7). One pass
// leaves Q^T w ~ eps |w0|, a relative error eps |w0| / |w| in the result; it is repeated when |w|^2
// after it, predicted as |w0|^2 - |Q^T w0|^2 (exact up to eps |w0|^2, far below the threshold), is
// below |w0|^2 / 4, after which the error is eps relative to the result ("twice is enough", Kahan
// and Parlett). Every column takes the same operations whatever the others and whatever the thread
// count: project_gradient and project_gradients give the same bits. Returns false when an entry of
// `in` is not finite (out then holds garbage; the caller names the entry).
template <class T>
bool RetainProjector::project_explicit(const T* in, Index in_stride, T* out, Index out_stride,
                                       Index m, const Scaling& whiten, const Scaling& unwhiten,
                                       bool copy_unprojected) {
  constexpr Index kChunk = kExplicitChunk;
  const double* wscale = whiten.scale;
  const double* uscale = unwhiten.scale;
  if (column_a_.rows() < explicit_q_.cols() || column_a_.cols() < 2 * m)
    column_a_.resize(explicit_q_.cols(), 2 * m);  // scratch kept across calls: no allocation
  std::vector<char>& repeat = column_active_;
  repeat.resize(static_cast<std::size_t>(m));
  bool all_finite = true;
  for (int b = 0; b < blocks(); ++b) {
    const int r = rank_[b];
    const Index o = block_offset_[b], n = block_size_[b];
    const Index chunks = (n + kChunk - 1) / kChunk;
    if (r == 0) {  // no projection: the scalings (or a copy) on the block's rows
      bool finite_rows = true;
#pragma omp parallel for schedule(static) reduction(&& : finite_rows) if (chunks > 1)
      for (Index c = 0; c < chunks; ++c) {
        double w[kStrip];
        for (Index j = 0; j < m; ++j)
          for (Index s0 = c * kChunk; s0 < std::min(n, (c + 1) * kChunk); s0 += kStrip) {
            const Index len = std::min(kStrip, n - s0), row = o + s0;
            const T* x = in + j * in_stride + row;
            T* y = out + j * out_stride + row;
            if (!finite_strip(x, len)) finite_rows = false;
            if (copy_unprojected) {
              if (y != x) std::copy(x, x + len, y);
              continue;
            }
            scale_strip(x, wscale ? wscale + row : nullptr, whiten.sign, len, w);
            scale_strip(w, uscale ? uscale + row : nullptr, unwhiten.sign, len, y);
          }
      }
      all_finite = all_finite && finite_rows;
      continue;
    }
    const double* q = explicit_q_.data() + o;
    const Index ld = explicit_q_.outerStride();
    if (chunk_sums_.cols() < chunks * m) chunk_sums_.resize(chunk_sums_.rows(), chunks * m);
    double* sums = chunk_sums_.data();
    const Index sums_ld = chunk_sums_.outerStride();
    // Sweep over the chunks: for each column j with select(j), w = (x .* whiten) on a strip,
    // less Q a (the first pass's coefficients) when subtractions = 1, then use(...).
    auto sweep = [&](auto select, int subtractions, auto use) {
#pragma omp parallel for schedule(static) if (chunks > 1)
      for (Index c = 0; c < chunks; ++c) {
        double w[kStrip];
        for (Index s0 = c * kChunk; s0 < std::min(n, (c + 1) * kChunk); s0 += kStrip) {
          for (Index j = 0; j < m; ++j) {
            if (!select(j)) continue;
            const Index len = std::min(kStrip, n - s0), row = o + s0;
            const T* x = in + j * in_stride + row;
            // The column's next strip, fetched while the other columns' strips are done: the
            // hardware prefetcher, restarted on each of m streams per strip, lags (float at
            // 1e7 x 16: 162 -> 128 ms; double 210 -> 198 ms).
            if (m > 1 && s0 + 2 * kStrip <= n)  // one column: one stream, prefetched already
              for (Index p = 0; p < kStrip; p += 64 / static_cast<Index>(sizeof(T)))
                __builtin_prefetch(x + kStrip + p);
            scale_strip(x, wscale ? wscale + row : nullptr, whiten.sign, len, w);
            for (int t = 0; t < subtractions; ++t)
              subtract_combination(q + s0, ld, column_a_.col(t * m + j).data(), r, len, w);
            use(j, c, s0, row, len, x, w);
          }
        }
        streaming::fence();  // the chunk's streamed results (last sweep) ordered before others'
      }
    };
    // Q^T w per chunk (rows 0..r-1 of the chunk's sums column), |w|^2 in row r; the first
    // sweep also counts the non-finite entries of x in row r + 1 (while the strip is in cache).
    auto accumulate = [&](bool first) {
      return [&, first](Index j, Index c, Index s0, Index, Index len, const T* x, const double* w) {
        double* p = sums + (j * chunks + c) * sums_ld;
        if (s0 == c * kChunk) std::fill(p, p + r + 2, 0.0);
        add_dots(q + s0, ld, r, w, len, p);
        if (!first) return;
        p[r] += squared_norm_in_lanes(w, len);
        p[r + 1] += finite_strip(x, len) ? 0.0 : 1.0;
      };
    };
    // a = the chunks' sums added in chunk order, into column_a_ column t * m + j.
    auto gather = [&](Index j, int t) {
      double* a = column_a_.col(t * m + j).data();
      std::fill(a, a + r, 0.0);
      double norm = 0.0;
      for (Index c = 0; c < chunks; ++c) {
        const double* p = sums + (j * chunks + c) * sums_ld;
        for (int k = 0; k < r; ++k) a[k] += p[k];
        norm += p[r];
        all_finite = all_finite && p[r + 1] == 0.0;
      }
      return norm;
    };
    const auto every = [](Index) { return true; };
    sweep(every, 0, accumulate(true));
    bool any_repeat = false;
    for (Index j = 0; j < m; ++j) {
      const double b0 = gather(j, 0);  // |w0|^2
      const double* a = column_a_.col(j).data();
      double removed = 0.0;
      for (int k = 0; k < r; ++k) removed += a[k] * a[k];
      repeat[static_cast<std::size_t>(j)] = b0 - removed < 0.25 * b0;
      any_repeat = any_repeat || repeat[static_cast<std::size_t>(j)];
    }
    const auto repeated = [&repeat](Index j) { return repeat[static_cast<std::size_t>(j)] != 0; };
    if (any_repeat) {
      sweep(repeated, 1, accumulate(false));
      for (Index j = 0; j < m; ++j)
        if (repeated(j)) gather(j, 1);
    }
    // Double results written to another matrix are streamed where they exceed the last-level
    // cache (core/streaming_stores.hpp): the strip is scaled in L1, then written around the
    // caches (the same values; in place, the lines are in cache already).
    const bool stream = std::is_same_v<T, double> && out != in &&
                        streaming::worth_it(static_cast<long long>(sizeof(T)) * n * m);
    sweep(every, 0, [&](Index j, Index, Index s0, Index row, Index len, const T*, double* w) {
      subtract_combination(q + s0, ld, column_a_.col(j).data(), r, len, w);
      if (repeated(j)) subtract_combination(q + s0, ld, column_a_.col(m + j).data(), r, len, w);
      const double* scale = uscale ? uscale + row : nullptr;
      if constexpr (std::is_same_v<T, double>) {
        if (stream) {
          scale_strip(w, scale, unwhiten.sign, len, w);
          streaming::put(out + j * out_stride + row, w, static_cast<int>(len), true);
          return;
        }
      }
      scale_strip(w, scale, unwhiten.sign, len, out + j * out_stride + row);
    });
  }
  return all_finite;
}

void RetainProjector::project_sign_selective(VectorRef w, double learning_rate) {
  const double lr = learning_rate;
  // The latest gradient is the window's newest unless the stale basis has stopped taking them.
  const bool newest_is_latest =
      options_.basis == RetainBasisPolicy::kSlidingWindow || pushes_ <= options_.window;
  for (int b = 0; b < blocks(); ++b) {
    const int r = rank_[b];
    if (r == 0) continue;
    const Index o = block_offset_[b], n = block_size_[b];
    // b = Q^T z_r, z_r the latest retain gradient whitened. Where z_r is the window's newest it
    // is the first column of the QR, so b = R(:, 0) = (R_00, 0, ..., 0) exactly when it was
    // kept, and 0 when it vanishes on this block. (Applying Q^T to z_r would leave rounding,
    // ~1e-16, in b_2.., and with tau = 0 the sign test would then keep arbitrary components.)
    // A stale basis that no longer takes new gradients does not hold z_r: b is computed.
    if (newest_is_latest) {
      work_.segment(o, r).setZero();
      if (newest_kept_[b]) work_[o] = factor_(o, 0);
    } else {
      const ConstVectorRef g_r = latest();
      if (identity_)
        work_.segment(o, n) = g_r.segment(o, n);
      else
        work_.segment(o, n) = g_r.segment(o, n).cwiseProduct(inv_sqrt_h_.segment(o, n));
      apply_qt(b, work_);
    }
    apply_qt(b, w);  // w = Q^T w0 = -lr Q^T z_f: the step's coefficients c = -lr a
    const double normal_norm = w.segment(o + r, n - r).norm();  // lr |z_n|
    double kept_sq = 0.0;
    for (int i = 0; i < r; ++i) {
      const double c = w[o + i];
      const double a = -c / lr;
      if (a * work_[o + i] > options_.tau) {
        small_a_[i] = c;
        kept_sq += c * c;
        ++report_.kept_components;
      } else {
        small_a_[i] = 0.0;
      }
    }
    double scale = 1.0;
    const double kept_norm = std::sqrt(kept_sq);
    if (kept_norm > options_.kappa * normal_norm) {
      scale = options_.kappa * normal_norm / kept_norm;
      ++report_.capped_blocks;
    }
    for (int i = 0; i < r; ++i) w[o + i] = scale * small_a_[i] - lr * options_.beta * work_[o + i];
    apply_q(b, w);
  }
}

// In whitened coordinates the cone problem is min 0.5 |w - w0|^2 s.t. zhat_j^T w <= 0, zhat_j =
// z_j / |z_j|. Split w = Q y + w_perp with Q the window's basis: the part of w0 outside span(Q)
// is unconstrained and kept, and the rest is the r-dimensional QP
//   min 0.5 |y - y0|^2  s.t.  (R_j / |z_j|)^T y <= 0,   y0 = Q^T w0,  R_j = Q^T z_j,
// solved by solve_dense_qp (P = I: positive definite even when the covectors are dependent,
// where the m x m dual's Gram matrix G^T H^-1 G is singular). Its multipliers lambda are the
// dual's: D = D0 - H^-1 sum_j (lambda_j / |z_j|) g_j.
void RetainProjector::project_cone(ConstVectorRef step, VectorRef out) {
  const int m = count_, k = options_.window;
  const double tol = options_.kkt_tolerance;
  for (int b = 0; b < blocks(); ++b) {
    const Index o = block_offset_[b], n = block_size_[b];
    const int r = rank_[b];
    const auto R = r_.middleCols(b * k, k);
    const auto norms = column_norm_.col(b);
    if (out.data() != step.data()) out.segment(o, n) = step.segment(o, n);
    if (r == 0) continue;  // no nonzero covector on this block: D = D0
    // y0 = Q^T w0 (in work_), and the constraint rows A_i = R_j^T / |z_j| for z_j != 0.
    if (identity_)
      work_.segment(o, n) = step.segment(o, n);
    else
      work_.segment(o, n) = step.segment(o, n).cwiseProduct(sqrt_h_.segment(o, n));
    const double w0_norm = work_.segment(o, n).norm();
    apply_qt(b, work_);
    int rows = 0;
    bool feasible = true;
    for (int j = 0; j < m; ++j) {
      if (norms[j] == 0.0) continue;
      small_index_[rows++] = j;
      if (R.col(j).head(r).dot(work_.segment(o, r)) > 0.0) feasible = false;
    }
    report_.constraints += rows;
    report_.rank += r;
    if (feasible) continue;  // D0 satisfies every constraint: mu = 0, D = D0 bit for bit
    Eigen::MatrixXd A(rows, r);
    for (int i = 0; i < rows; ++i) {
      const int j = small_index_[i];
      A.row(i) = R.col(j).head(r).transpose() / norms[j];
    }
    const Eigen::VectorXd y0 = work_.segment(o, r);
    const DenseQpResult qp =
        solve_dense_qp(Eigen::MatrixXd::Identity(r, r), -y0, A, Eigen::VectorXd::Zero(rows), {});
    report_.qp_iterations += qp.iterations;
    require<NumericalError>(qp.converged && qp.x.allFinite(),
                            "RetainProjector (cone): the QP did not converge in ", qp.iterations,
                            " iterations (KKT residual ", qp.kkt_residual, ")");
    work_.segment(o, r) = qp.x;
    apply_q(b, work_);  // w = Q [y; (Q^T w0)_tail]
    if (identity_)
      out.segment(o, n) = work_.segment(o, n);
    else
      out.segment(o, n) = work_.segment(o, n).cwiseProduct(inv_sqrt_h_.segment(o, n));
    // The primal KKT conditions in the original coordinates, normalised by |z_j| |D0|_H:
    // g_j^T D <= 0, lambda >= 0, lambda_j g_j^T D = 0, and stationarity below.
    double primal = 0.0, dual = 0.0, complementarity = 0.0;
    for (int i = 0; i < rows; ++i) {
      const int j = small_index_[i];
      const double change =
          raw_.col(column_of(j)).segment(o, n).dot(out.segment(o, n)) / (norms[j] * w0_norm);
      const double lambda = qp.multipliers[i];
      primal = std::max(primal, change);
      dual = std::max(dual, -lambda);
      complementarity = std::max(complementarity, std::abs(lambda * change));
      if (lambda > 0.0) ++report_.active_constraints;
    }
    // Stationarity of the QP, y - y0 + A^T lambda = 0, relative to |w0|. (The QP's own
    // kkt_residual scales each row by its rounding scale sum_j |A_ij y_j|, which is itself
    // rounding when the answer is the cone's apex y = 0; so it is reported, not used.)
    const double stationarity = (qp.x - y0 + A.transpose() * qp.multipliers).norm() / w0_norm;
    const double kkt = std::max({primal, dual, complementarity, stationarity});
    report_.kkt_residual = std::max(report_.kkt_residual, kkt);
    require<NumericalError>(kkt <= tol, "RetainProjector (cone): KKT check failed on block ", b,
                            ": retain change ", primal, ", negative multiplier ", dual,
                            ", complementarity ", complementarity, ", stationarity ", stationarity,
                            " > kkt_tolerance ", tol, " (QP residual ", qp.kkt_residual,
                            ", |y| = ", qp.x.norm(), ")");
  }
}

void RetainProjector::project_step(ConstVectorRef step, double learning_rate, VectorRef out) {
  check_vector(step, "project_step", "step");
  require<ShapeError>(out.size() == dimension_, "RetainProjector::project_step: out has size ",
                      out.size(), ", the dimension is ", dimension_);
  require(learning_rate > 0.0 && std::isfinite(learning_rate),
          "RetainProjector::project_step: learning_rate must be finite and > 0, got ",
          learning_rate);
  if (stale_) rebuild();
  report_ = RetainProjectionReport{};
  if (options_.mode == RetainProjectionMode::kCone) {
    project_cone(step, out);
    return;
  }
  for (const int r : rank_) report_.rank += r;
  if (report_.rank == 0) {  // nothing to project against: D = D0, bit for bit
    if (out.data() != step.data()) out = step;
    return;
  }
  if (options_.mode == RetainProjectionMode::kNullSpace && use_explicit_basis()) {
    // D = S^-1 P (S D0) on the blocks with a basis, D0 elsewhere.
    project_explicit(step.data(), dimension_, out.data(), dimension_, 1,
                     {identity_ ? nullptr : sqrt_h_.data(), 1.0},
                     {identity_ ? nullptr : inv_sqrt_h_.data(), 1.0}, true);
    return;
  }
  if (out.data() != step.data()) out = step;
  if (!identity_)
    for (int b = 0; b < blocks(); ++b)
      if (rank_[b] > 0) {
        const Index o = block_offset_[b], n = block_size_[b];
        out.segment(o, n).array() *= sqrt_h_.segment(o, n).array();
      }
  if (options_.mode == RetainProjectionMode::kSignSelective)
    project_sign_selective(out, learning_rate);
  else
    project_null_space_reflectors(out);
  if (!identity_)
    for (int b = 0; b < blocks(); ++b)
      if (rank_[b] > 0) {
        const Index o = block_offset_[b], n = block_size_[b];
        out.segment(o, n).array() *= inv_sqrt_h_.segment(o, n).array();
      }
}

void RetainProjector::project_gradients(const Eigen::MatrixXd& gradients, Eigen::MatrixXd& out) {
  project_gradients_of(gradients, out);
}

void RetainProjector::project_gradients(const Eigen::MatrixXf& gradients, Eigen::MatrixXf& out) {
  project_gradients_of(gradients, out);
}

template <class T>
void RetainProjector::project_gradients_of(
    const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& gradients,
    Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& out) {
  require<ShapeError>(gradients.rows() == dimension_,
                      "RetainProjector::project_gradients: ", "gradients have ", gradients.rows(),
                      " rows, the dimension is ", dimension_);
  const Index m = gradients.cols();
  out.resize(dimension_, m);
  constexpr bool kDouble = std::is_same_v<T, double>;
  // Column k as doubles (float converts exactly), and its refusal naming the entry.
  auto column = [&](Index k) -> Vector { return gradients.col(k).template cast<double>(); };
  auto check_column = [&](Index k) {
    const std::string what = detail::concat("gradient in column ", k);
    if constexpr (kDouble)
      check_vector(gradients.col(k), "project_gradients", what.c_str());
    else
      check_vector(column(k), "project_gradients", what.c_str());
  };
  // Column by column until the explicit basis serves the null-space projection (the reflectors
  // serve the first two after a rebuild, as project_gradient does), then the rest at once: the
  // same operations per column as project_gradient, with the basis read once per chunk for all
  // of them rather than once per column. (Float: in double, each result rounded once.)
  Index j = 0;
  for (; j < m; ++j) {
    if (options_.mode == RetainProjectionMode::kNullSpace && !stale_ && explicit_valid_) break;
    if constexpr (kDouble) {
      project_gradient(gradients.col(j), out.col(j));
    } else {
      check_column(j);
      out.col(j) = project_gradient(column(j)).template cast<float>();
    }
  }
  if (j == m) return;
  report_ = RetainProjectionReport{};
  for (const int r : rank_) report_.rank += r;
  // In place (out is gradients), a non-finite entry is named before anything is written: the
  // fused pass finds it only after writing earlier blocks, whose input would then be gone.
  if (out.data() == gradients.data())
    for (Index k = j; k < m; ++k) check_column(k);
  // The whitened steps for lr = 1 are w0 = -S g; p = -S w, as project_gradient (the same
  // function, so the same bits per column), with Q's and S's rows read once for all columns.
  const Scaling minus_s{identity_ ? nullptr : inv_sqrt_h_.data(), -1.0};
  if (project_explicit(gradients.col(j).data(), gradients.outerStride(), out.col(j).data(),
                       out.outerStride(), m - j, minus_s, minus_s, false))
    return;
  for (Index k = j; k < m; ++k) check_column(k);  // names the first non-finite entry
}

Eigen::MatrixXd RetainProjector::basis(int block) {
  require(block >= 0 && block < blocks(), "RetainProjector::basis: block ", block, " outside [0, ",
          blocks(), ")");
  if (stale_) rebuild();
  const Index o = block_offset_[static_cast<std::size_t>(block)];
  const Index n = block_size_[static_cast<std::size_t>(block)];
  const int r = rank_[static_cast<std::size_t>(block)];
  Eigen::MatrixXd q(n, r);
  Vector column(dimension_);
  for (int j = 0; j < r; ++j) {  // column j = H_0 .. H_j e_j, as form_explicit_basis
    column.setZero();
    column[o + j] = 1.0;
    for (int i = j; i >= 0; --i) reflect(block, i, column);
    q.col(j) = column.segment(o, n);
  }
  return q;
}

void RetainProjector::project_gradient(ConstVectorRef gradient, VectorRef out) {
  check_vector(gradient, "project_gradient", "gradient");
  require<ShapeError>(out.size() == dimension_, "RetainProjector::project_gradient: out has size ",
                      out.size(), ", the dimension is ", dimension_);
  if (stale_) rebuild();
  if (options_.mode == RetainProjectionMode::kCone) {
    // The proposed step -H^-1 g (lr = 1), projected; p = -D.
    if (identity_)
      out = -gradient;
    else
      out = -(gradient.cwiseProduct(inv_sqrt_h_).cwiseProduct(inv_sqrt_h_));
    project_step(out, 1.0, out);
    out = -out;
    return;
  }
  report_ = RetainProjectionReport{};
  for (const int r : rank_) report_.rank += r;
  // The whitened step for lr = 1 is w0 = -S g = -z_f; p = -S w.
  if (options_.mode == RetainProjectionMode::kNullSpace && use_explicit_basis()) {
    const Scaling minus_s{identity_ ? nullptr : inv_sqrt_h_.data(), -1.0};
    project_explicit(gradient.data(), dimension_, out.data(), dimension_, 1, minus_s, minus_s,
                     false);
    return;
  }
  if (identity_)
    out = -gradient;
  else
    out = -(gradient.cwiseProduct(inv_sqrt_h_));
  if (options_.mode == RetainProjectionMode::kSignSelective)
    project_sign_selective(out, 1.0);
  else
    project_null_space_reflectors(out);
  if (identity_)
    out = -out;
  else
    out = -(out.cwiseProduct(inv_sqrt_h_));
}

Vector RetainProjector::project_gradient(ConstVectorRef gradient) {
  Vector out(gradient.size());
  project_gradient(gradient, out);
  return out;
}

}  // namespace tether
