// RetainProjector: the retain subspace of GU, and the projections of a step against it, in the
// optimizer's metric. Spec: specs/projection.md, section 1. Paper: "Geometric-Disentanglement
// Unlearning" (GU, arXiv 2511.17100).
//
// The object. A window of the k most recent batch-level retain gradients g_r,1..m (m <= k,
// covectors in R^d), a diagonal metric H = Diag(h) (the optimizer's preconditioner: the identity
// for SGD, h = sqrt(v_hat) + eps for Adam) and S = H^(-1/2). Whenever the window or the metric
// changed, the basis is rebuilt before the next projection:
//   z_r,i = S g_r,i                        whiten with the CURRENT metric
//   Q     = Householder QR of [z_r,1 .. z_r,m] in double, newest gradient first; a column whose
//           residual after the newer ones is <= rank_tolerance |z_r,i| is dropped (near-dependent)
// so the newest retain gradient is never dropped (unless it is zero) and the step is exactly
// invariant for it. Q is kept implicitly, as its Householder reflectors, and applied as such:
// z - Q Q^T z = Q [0; (Q^T z)_tail] is orthogonal to every kept column to rounding relative to
// its own norm, however much of z lay in the span (a single explicit Gram-Schmidt pass is not).
//
// Null space (default). For a proposed step D0 (the optimizer's realised step: preconditioning,
// momentum and weight decay included), in whitened coordinates w0 = S^-1 D0:
//   D = S (I - Q Q^T) S^-1 D0  =  (I - U (U^T H U)^-1 U^T H) D0,  U = H^-1 G_r
// the H-orthogonal projection onto {D : G_r^T D = 0}. For D0 = -lr H^-1 g_f (SGD, or Adam with
// beta1 = 0 and no decay) this is the spec's step = -lr S z_n with z_f = S g_f,
// z_n = z_f - Q Q^T z_f: then g_r,i^T step = 0 and g_f^T step = -lr |z_n|^2, and among all
// directions with G_r^T d = 0 and d^T H d <= rho^2 the direction -rho S z_n / |z_n| lowers l_f
// fastest to first order (the trust-region optimality of the paper). Idempotent; the identity
// (bit for bit) when no nonzero retain gradient is held.
//
// Sign-selective. Also keeps the tangential components that help the retain loss. With
// z_f = -w0 / lr (the forget gradient the step descends, whitened), a = Q^T z_f, b = Q^T z_r
// (z_r the latest pushed retain gradient, whitened) and K = {i : a_i b_i > tau}:
//   z = z_n + c sum_{i in K} a_i q_i + beta Q b,   c = min(1, kappa |z_n| / |sum_K a_i q_i|)
//   D = -lr S z
// The first-order retain change is g_r^T D = -lr (c sum_K a_i b_i + beta |b|^2) <= 0 (tau >= 0,
// beta >= 0). Per-component rules depend on the basis; ours has q_1 along the newest retain
// gradient, so b = (|z_r|, 0, ..., 0) up to sign: K is at most {1}, i.e. the forget component
// along the current retain gradient is kept (capped) exactly when <z_f, z_r> > tau, and the
// components along older gradients are removed as in the null space. The public code keeps the
// opposite sign (a_i b_i < -tau: the retain loss rises) and whitens with H^-1: we do neither
// (tests/retain_projector_test.cpp reproduces its rule and shows the rise).
//
// Cone ("project the realised step"). D = argmin 0.5 |D - D0|_H^2 subject to G_r^T D <= 0. Its
// m x m dual is min 0.5 mu^T (G^T H^-1 G) mu - mu^T G^T D0 over mu >= 0, D = D0 - H^-1 G mu; but
// that Gram matrix is singular whenever the window's gradients are dependent (a repeated
// gradient, a window larger than a block), and the dense QP wants it definite. So the primal is
// solved in the window's span instead: with w = S^-1 D = Q y + w_perp, the part of w0 = S^-1 D0
// outside span(Q) is unconstrained and kept, and y solves the r-dimensional QP
//   min 0.5 |y - y0|^2  s.t.  (R_j / |z_j|)^T y <= 0  (every nonzero z_j),  y0 = Q^T w0
// (R_j = Q^T z_j from the same QR) by solve_dense_qp (core/dense_qp.hpp, an active-set QP in
// double; P = I is definite, dependent rows are its business). Its multipliers lambda are the
// dual's: mu_j = lambda_j / |z_j|. The KKT conditions are then checked: in the original
// coordinates the retain changes max_j g_j^T D / (|g_j|_{H^-1} |D0|_H), the multipliers
// max_j -lambda_j and the complementarity max_j |lambda_j| times the change, and the QP's
// stationarity |y - y0 + A^T lambda| / |w0| must all be <= kkt_tolerance, else NumericalError. (The
// QP's own kkt_residual is not used: it scales each row by sum_i |A_ji y_i|, which is rounding
// when the answer is at or near the cone's apex y = 0, and then reads ~0.5 for a correct answer.)
// A step already in the cone is returned bit for bit. Non-expansive in |.|_H, idempotent.
//
// Scope. Global (default): one basis over all d coordinates. Blockwise: block_sizes partition
// the coordinates (e.g. per layer) and each block gets its own basis, constraints and cap, built
// from the retain gradients restricted to it: stricter than global. Forget (2, 1) and retain
// (1, 3): global gives (1.5, -0.5), two one-element blocks give (0, 0).
//
// Window. kSlidingWindow (default) keeps the k most recent pushes, always including the current
// one. kFirstK keeps the first k pushes forever (the public code's stale basis; only to
// reproduce it): later pushes only become latest(). Micro-batches: accumulate() sums weighted
// micro-batch gradients, push_accumulated() pushes the sum as one batch-level gradient.
//
// Cost and memory. 2 d k doubles for the raw window and its whitened factorisation, plus a few
// d-vectors, all allocated at construction (accumulate's buffer at its first call). A rebuild
// is one pass to whiten and k(k-1)/2 reflector updates (O(d k^2)); a null-space or
// sign-selective projection applies 2 r reflectors (O(d r)) and allocates nothing. The cone
// mode applies the same 2 r reflectors and one pass over the window to check the KKT conditions,
// and allocates the QP's O(k^2) objects when D0 is outside the cone.
// A basis that serves several null-space projections (refresh > 1, or many gradients against
// one window) is formed explicitly at its third use, Q = H_1 .. H_r [I; 0] (r(r+1)/2 reflector
// updates, about two projections' worth, once, into a further d k doubles; forming when the
// reflector passes spent equal the forming cost bounds the loss at 2x, as in ski rental); from
// then on z - Q Q^T z is two row-chunked sweeps over Q and the gradient (three when the first
// removes most of z), threaded, with partial sums added in chunk order (the same bits for any
// thread count), the whitening and unwhitening applied as the rows are read and written, and
// for many gradients (project_gradients) each chunk of Q read once for all of them. Both forms give
// z_n to rounding, and which one runs depends only on the sequence of calls, so a run's bits are
// reproducible. Measured at d = 1e6, k = 8: see benchmarks/README.md (BM_RetainProjection*).
//
//   tether::RetainProjector proj(d, {.window = 8});
//   proj.push(g_r);                           // once per step (or every `refresh` steps)
//   proj.set_metric(h);                       // Adam: rule.preconditioner(h)
//   proj.project_step(D0, lr, D);             // D0: the optimizer's step; theta += D
//   proj.project_gradient(g_f, p);            // p = S z_n: the step is -lr p
#pragma once

#include <string>
#include <tether/core/types.hpp>
#include <vector>

namespace tether {

enum class RetainProjectionMode {
  kNullSpace,      ///< G_r^T D = 0: the retain loss is unchanged to first order (default)
  kSignSelective,  ///< also keep tangential components that lower the retain loss (capped)
  kCone,           ///< G_r^T D <= 0 by an active-set QP on the realised step
};

enum class RetainScope {
  kGlobal,     ///< one basis over all coordinates (default)
  kBlockwise,  ///< one basis per block of block_sizes (e.g. per layer)
};

enum class RetainBasisPolicy {
  kSlidingWindow,  ///< the k most recent retain gradients (default)
  kFirstK,         ///< the first k pushes forever (zero or dependent ones included): the public
                   ///< code's stale basis, for reproduction only
};

struct RetainProjectorOptions {
  RetainProjectionMode mode = RetainProjectionMode::kNullSpace;
  /// k, the number of retain gradients kept; >= 1. The paper's code uses 8.
  int window = 8;
  RetainScope scope = RetainScope::kGlobal;
  /// kBlockwise: the sizes of consecutive coordinate blocks, each >= 1, summing to d. Must be
  /// empty for kGlobal.
  std::vector<Index> block_sizes;
  RetainBasisPolicy basis = RetainBasisPolicy::kSlidingWindow;
  /// Sign-selective cap: the kept tangential part has norm <= kappa |z_n|; finite, >= 0.
  double kappa = 0.5;
  /// Sign-selective threshold: component i is kept when a_i b_i > tau; finite, >= 0 (a negative
  /// tau would keep components that raise the retain loss).
  double tau = 0.0;
  /// Sign-selective weight of the retain gradient inside the span; finite, >= 0 (0: none).
  double beta = 0.0;
  /// A whitened retain gradient whose residual after the newer ones is <= rank_tolerance times
  /// its norm is dropped; in [0, 1). The step then changes that gradient's loss by at most
  /// rank_tolerance |z_r,i| |z_n| to first order.
  double rank_tolerance = 1e-10;
  /// Cone: bound on the normalised KKT residuals (see the header); finite, > 0.
  double kkt_tolerance = 1e-9;

  /// True when every field is in its domain; otherwise `why` names the field and the bound.
  bool is_valid(std::string* why) const;
};

/// What the last projection did.
struct RetainProjectionReport {
  int rank = 0;                ///< kept basis columns, summed over blocks
  int kept_components = 0;     ///< sign-selective: tangential components kept, over blocks
  int capped_blocks = 0;       ///< sign-selective: blocks whose kept part was scaled to the cap
  int constraints = 0;         ///< cone: nonzero retain covectors, over blocks
  int active_constraints = 0;  ///< cone: constraints with a multiplier > 0
  int qp_iterations = 0;       ///< cone: active-set iterations, over blocks
  double kkt_residual = 0.0;   ///< cone: the largest normalised primal KKT residual
};

class RetainProjector {
 public:
  /// Allocates every buffer. Throws InvalidArgumentError for invalid options or d < 1, and
  /// ShapeError when block_sizes do not sum to d.
  explicit RetainProjector(Index dimension, const RetainProjectorOptions& options = {});

  Index dimension() const { return dimension_; }
  const RetainProjectorOptions& options() const { return options_; }
  int blocks() const { return static_cast<int>(block_offset_.size()); }

  // ---- the window ----
  /// Adds one batch-level retain gradient (newest). ShapeError on a wrong size, NumericalError
  /// on NaN/Inf (naming the first bad entry).
  void push(ConstVectorRef retain_gradient);
  /// pending += weight * micro_batch_gradient (weight finite); checks as push().
  void accumulate(ConstVectorRef micro_batch_gradient, double weight = 1.0);
  /// Pushes the pending sum and clears it. InvalidArgumentError when nothing was accumulated.
  void push_accumulated();
  /// Micro-batches accumulated since the last push_accumulated().
  int accumulated() const { return accumulated_; }
  /// Forgets every retain gradient (and the pending sum); keeps the metric.
  void clear();
  /// Retain gradients held (<= window).
  int size() const { return count_; }
  /// Gradients pushed since construction or clear().
  long pushes() const { return pushes_; }
  /// The most recent pushed retain gradient (also under kFirstK, where it may not be held).
  /// InvalidArgumentError when nothing was pushed.
  ConstVectorRef latest() const;

  // ---- the metric ----
  /// H = Diag(h): every h_j finite and > 0 (InvalidArgumentError naming the entry; ShapeError).
  void set_metric(ConstVectorRef h);
  /// H = I (the initial metric).
  void set_identity_metric();
  bool identity_metric() const { return identity_; }

  // ---- the basis ----
  /// Kept basis columns over all blocks (rebuilds the basis if the window or metric changed).
  int rank();
  /// Kept columns of one block.
  int rank(int block);

  // ---- projections (null space, sign-selective or cone, by options().mode) ----
  /// D = the projected step of a proposed step D0 (x_new = x + D); `learning_rate` (finite,
  /// > 0) converts the step to the forget gradient it descends (z_f = -S^-1 D0 / lr), which only
  /// the sign-selective rule needs (tau, beta are in gradient units). out may alias step.
  /// ShapeError on sizes; NumericalError on NaN/Inf in D0 or, in cone mode, a failed KKT check.
  void project_step(ConstVectorRef step, double learning_rate, VectorRef out);
  /// The gradient form of the spec: p such that the projected step is -lr p for the proposed
  /// step -lr H^-1 g (lr = 1 for the sign-selective rule's units). Null space: p = S z_n with
  /// z_f = S g; sign-selective: p = S z; cone: p = -P(-H^-1 g). out may alias g.
  void project_gradient(ConstVectorRef gradient, VectorRef out);
  /// The same, returning p.
  Vector project_gradient(ConstVectorRef gradient);
  /// project_gradient for many gradients at once: column j of out is the projection of column
  /// j of gradients (d x m; out is resized), the same bits as calling project_gradient on the
  /// columns in turn. The device version is device::project_gradients
  /// (solvers/retain_projector_device.hpp).
  void project_gradients(const Eigen::MatrixXd& gradients, Eigen::MatrixXd& out);
  /// The same for float gradients (a model's, as stored): every operation is done in double on
  /// the exactly converted entries and each result rounded once to float, so out equals the
  /// double overload's result on gradients.cast<double>(), cast to float, bit for bit. Reads
  /// and writes half the bytes (the basis and metric stay double).
  void project_gradients(const Eigen::MatrixXf& gradients, Eigen::MatrixXf& out);

  // ---- the basis, explicitly (for other backends) ----
  /// Rows [block_offset(b), block_offset(b) + block_size(b)) of the parameters form block b.
  Index block_offset(int block) const { return block_offset_[static_cast<std::size_t>(block)]; }
  Index block_size(int block) const { return block_size_[static_cast<std::size_t>(block)]; }
  /// Q_b as a block_size(b) x rank(b) matrix with orthonormal columns, spanning the whitened
  /// retain gradients kept on block b (rebuilds the basis if the window or metric changed).
  /// Formed from the reflectors: O(block_size rank^2).
  Eigen::MatrixXd basis(int block);
  /// The whitening S = H^(-1/2) as a vector, or an empty one while the metric is the identity.
  Vector whitening() const { return identity_ ? Vector() : inv_sqrt_h_; }

  const RetainProjectionReport& last_report() const { return report_; }

 private:
  void rebuild();
  void check_vector(ConstVectorRef v, const char* who, const char* what) const;
  // Applies reflector i of block b, Q_b^T (forward) or Q_b (backward) to the block's segment of x.
  void reflect(int b, int i, VectorRef x) const;
  void apply_qt(int b, VectorRef x) const;
  void apply_q(int b, VectorRef x) const;
  // The whitened projections, in place on w (the block's whitened step).
  void project_null_space_reflectors(VectorRef w) const;
  bool use_explicit_basis();
  void form_explicit_basis();
  // A diagonal scaling x_i -> x_i * (sign * scale_i); scale == nullptr: x_i * sign.
  struct Scaling {
    const double* scale = nullptr;
    double sign = 1.0;
  };
  template <class T>  // both project_gradients
  void project_gradients_of(const Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& gradients,
                            Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic>& out);
  template <class T>  // double, or float (computed in double, rounded at the end)
  bool project_explicit(const T* in, Index in_stride, T* out, Index out_stride, Index m,
                        const Scaling& whiten, const Scaling& unwhiten, bool copy_unprojected);
  void project_sign_selective(VectorRef w, double learning_rate);
  void project_cone(ConstVectorRef step, VectorRef out);
  int column_of(int age) const;  // storage column of the age-th newest gradient

  Index dimension_;
  RetainProjectorOptions options_;
  std::vector<Index> block_offset_, block_size_;

  Eigen::MatrixXd raw_;              // d x k: the window, a ring of columns
  Eigen::MatrixXd factor_;           // d x k: the whitened window, then its Householder QR
  Eigen::MatrixXd tau_;              // k x blocks: reflector coefficients
  Eigen::MatrixXd r_;                // k x (k blocks): R_b(:, j) = Q_b^T z_j, j the age
  Eigen::MatrixXd column_norm_;      // k x blocks: |z_j| on each block
  Eigen::MatrixXd explicit_q_;       // d x k: Q_b's r_b columns on block b's rows, once formed
  bool explicit_valid_ = false;      // explicit_q_ holds the current basis
  Eigen::MatrixXd chunk_sums_;       // (k + 2) x (chunks x columns): the passes' partial sums
  int null_space_uses_ = 0;          // null-space projections since the last rebuild
  std::vector<int> rank_;            // per block
  std::vector<bool> newest_kept_;    // per block: the newest gradient is reflector 0
  Vector sqrt_h_, inv_sqrt_h_;       // S^-1 and S (unused while the metric is the identity)
  Vector latest_;                    // kFirstK: the latest push (the window may not hold it)
  Vector work_;                      // d: Q^T z_r (sign-selective, kFirstK), Q^T w0 (cone)
  Vector pending_;                   // accumulate()'s sum, allocated at its first call
  Vector small_a_;                   // k-sized scratch
  Eigen::MatrixXd column_a_;         // k x 2m: project_explicit's Q^T w (both passes)
  std::vector<char> column_active_;  // per column: its pass is repeated
  std::vector<int> small_index_;
  int head_ = 0;  // storage column of the newest gradient
  int count_ = 0;
  long pushes_ = 0;
  int accumulated_ = 0;
  bool identity_ = true;
  bool stale_ = true;  // the basis must be rebuilt
  bool have_latest_ = false;
  RetainProjectionReport report_;
};

}  // namespace tether
