// The flossing window kernel of fastqr._RNNTangentLogs (CholeskyQR with a float64 Gram, hand-written
// backward) with its per-step loop in C++, calling BLAS / LAPACK (sgemm/dgemm, dpotrf, strsm/dtrsm) on
// each network's matrices directly: no dispatcher, no layout copies (row-major tensors are handed to the
// column-major routines as their transposes), no triu of the Cholesky factor; per step one float64 copy of
// A for its Gram and nothing else in float64 (Q = A R⁻¹ is solved in the data's dtype: its rounding,
// cond(A)·eps, is the data's own, as Householder's would be). The weight gradient is ONE gemm over all
// steps. Same algorithm as the Python loop, rounded and summed in a different order: equal to it to
// rounding, not bit for bit (tests/test_fastqr.py). CPU only, float32 / float64 data, float64 Gram, one
// CholeskyQR pass (no refine); the Python loop runs everything else, and the whole window where a Gram
// is not positive definite. Loaded by native.py as torch.ops.floss_window.*.
//
// Layouts (row-major, contiguous): S (L, B, N) tanh'(x_{t-1}); Jb (B, N, N); Q0 (B, N, k);
// Qs (B, L+1, N, k) with Q_t in slot t (P_t = s_t ⊙ Q_{t-1} is not kept: the backward makes it again,
// one network at a time, in the (N, L, k) layout where the weight gradient Σ_t gA_t P_tᵀ is one product); Rs (nq, B, k, k) R column-major (row-major:
// Rᵀ) in the data's dtype; diag (nq, B, k) float64.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <tuple>
#include <vector>

extern "C" {
void sgemm_(const char*, const char*, const int*, const int*, const int*, const float*, const float*, const int*,
            const float*, const int*, const float*, float*, const int*);
void dgemm_(const char*, const char*, const int*, const int*, const int*, const double*, const double*,
            const int*, const double*, const int*, const double*, double*, const int*);
void strsm_(const char*, const char*, const char*, const char*, const int*, const int*, const float*,
            const float*, const int*, float*, const int*);
void dtrsm_(const char*, const char*, const char*, const char*, const int*, const int*, const double*,
            const double*, const int*, double*, const int*);
void dpotrf_(const char*, const int*, double*, const int*, int*);
}

namespace {

// column-major BLAS on row-major data: C (m x n, ldc) = alpha op(A) op(B) + beta C
inline void gemm(char ta, char tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b,
                 int ldb, float beta, float* c, int ldc) {
  sgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void gemm(char ta, char tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
                 int ldb, double beta, double* c, int ldc) {
  dgemm_(&ta, &tb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}
inline void trsm(char side, char uplo, char ta, int m, int n, const float* a, int lda, float* b, int ldb) {
  const char diag = 'N';
  const float one = 1.0f;
  strsm_(&side, &uplo, &ta, &diag, &m, &n, &one, a, &lda, b, &ldb);
}
inline void trsm(char side, char uplo, char ta, int m, int n, const double* a, int lda, double* b, int ldb) {
  const char diag = 'N';
  const double one = 1.0;
  dtrsm_(&side, &uplo, &ta, &diag, &m, &n, &one, a, &lda, b, &ldb);
}

// the element-wise pieces, written so that the compiler vectorises them (no aliasing, -O3)
template <typename T>
inline void scale_row(T* __restrict__ out, const T* __restrict__ x, T s, int n) {
  for (int c = 0; c < n; ++c) out[c] = s * x[c];
}
template <typename T>
inline void mul_row(T* __restrict__ out, const T* __restrict__ x, const T* __restrict__ y, int n) {
  for (int c = 0; c < n; ++c) out[c] = x[c] * y[c];
}
template <typename A, typename B>
inline void convert(A* __restrict__ out, const B* __restrict__ x, size_t n) {
  for (size_t c = 0; c < n; ++c) out[c] = static_cast<A>(x[c]);
}
template <typename T>
inline T dot(const T* __restrict__ x, const T* __restrict__ y, int n) {
  T acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};               // eight partial sums: a vectorisable reduction
  int c = 0;
  for (; c + 8 <= n; c += 8)
    for (int l = 0; l < 8; ++l) acc[l] += x[c + l] * y[c + l];
  T tail = 0;
  for (; c < n; ++c) tail += x[c] * y[c];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7])) + tail;
}

// The upper triangle (column-major) of G = X Xᵀ, X (k x N) column-major, in three products of two column
// blocks (BLAS has no syrk among the symbols torch exports): 3/4 of a full product's work
inline void gram_upper(const double* X, double* G, int k, int N) {
  const int k1 = k < 16 ? k : (k / 2 + 7) / 8 * 8, k2 = k - k1;
  gemm('N', 'T', k1, k1, N, 1.0, X, k, X, k, 0.0, G, k);                     // G11
  if (k2 == 0) return;
  gemm('N', 'T', k1, k2, N, 1.0, X, k, X + k1, k, 0.0, G + k1 * k, k);       // G12
  gemm('N', 'T', k2, k2, N, 1.0, X + k1, k, X + k1, k, 0.0, G + k1 * k + k1, k);   // G22
}

template <typename T>
int64_t forward_impl(const at::Tensor& S, const at::Tensor& Jb, const at::Tensor& Q0, const std::vector<bool>& is_qr,
                     at::Tensor& Qs, at::Tensor& Rs, at::Tensor& diag) {
  const int L = S.size(0), B = S.size(1), N = S.size(2), k = Q0.size(2);
  const int ldq = k, ldp = L * k;
  const size_t nk = static_cast<size_t>(N) * k;
  const T* s = S.data_ptr<T>();
  const T* J = Jb.data_ptr<T>();
  const T* q0 = Q0.data_ptr<T>();
  T* qs = Qs.data_ptr<T>();
  T* rs = Rs.data_ptr<T>();
  double* dg = diag.data_ptr<double>();
  std::vector<double> Ad(static_cast<size_t>(N) * k), G(static_cast<size_t>(k) * k);
  std::vector<T> Pn(static_cast<size_t>(N) * k);
  for (int b = 0; b < B; ++b) {                     // one network's J stays in cache for its whole window
    const T* Jn = J + static_cast<size_t>(b) * N * N;
    T* Q = qs + static_cast<size_t>(b) * (L + 1) * nk;
    std::copy_n(q0 + b * nk, nk, Q);
    int j = 0;
    for (int t = 1; t <= L; ++t) {
      const T* st = s + (static_cast<size_t>(t - 1) * B + b) * N;
      const T* Qp = Q + (t - 1) * nk;
      T* Pt = Pn.data();
      for (int i = 0; i < N; ++i) scale_row(Pt + i * k, Qp + i * ldq, st[i], k);   // P_t = s_t ⊙ Q_{t-1}
      T* Qt = Q + t * nk;
      if (!is_qr[t]) {                              // Q_t = J P_t (row-major: Q_tᵀ = P_tᵀ Jᵀ)
        gemm('N', 'N', k, N, N, T(1), Pt, k, Jn, N, T(0), Qt, ldq);
        continue;
      }
      gemm('N', 'N', k, N, N, T(1), Pt, k, Jn, N, T(0), Qt, ldq);            // A_t = J P_t, (N, k)
      convert(Ad.data(), Qt, nk);
      gram_upper(Ad.data(), G.data(), k, N);       // G = AᵀA in float64, its upper triangle
      int info = 0;
      dpotrf_("U", &k, G.data(), &k, &info);        // column-major upper R, G = RᵀR
      if (info != 0) return t;                      // not positive definite: the caller takes Householder
      T* R = rs + (static_cast<size_t>(j) * B + b) * k * k;
      double* d = dg + (static_cast<size_t>(j) * B + b) * k;
      for (int c = 0; c < k; ++c) {                 // R column-major (row-major: Rᵀ), below the diagonal 0
        d[c] = G[c + c * k];
        convert(R + c * k, G.data() + c * k, c + 1);
        std::fill(R + c * k + c + 1, R + (c + 1) * k, T(0));
      }
      // Q = A R⁻¹ in the data's dtype (column-major: Rᵀ Qᵀ = Aᵀ): its rounding, cond(A) · eps, is the data's
      // own; the Gram's float64 keeps the cond(A)² · eps part small
      trsm('L', 'U', 'T', k, N, R, k, Qt, ldq);
      ++j;
    }
  }
  return 0;
}

template <typename T>
void backward_impl(const at::Tensor& S, const at::Tensor& Jb, const at::Tensor& Qs, const at::Tensor& Rs, const at::Tensor& G, const std::vector<bool>& is_qr, at::Tensor& gS,
                   at::Tensor& gJ) {
  const int L = S.size(0), B = S.size(1), N = S.size(2), k = Qs.size(3), nq = Rs.size(0);
  const int ldq = k, ldp = L * k;
  const size_t nk = static_cast<size_t>(N) * k;
  const T* s = S.data_ptr<T>();
  const T* J = Jb.data_ptr<T>();
  const T* qs = Qs.data_ptr<T>();
  const T* rs = Rs.data_ptr<T>();
  const T* g = G.data_ptr<T>();
  T* gs = gS.data_ptr<T>();
  T* gj = gJ.data_ptr<T>();
  std::vector<T> V(static_cast<size_t>(N) * k), W(static_cast<size_t>(k) * k);
  // gA_t in slot t-1, (N, L, k): the weight gradient's operand. ∂/∂Q_{t-1} is written into slot t-2, where
  // gA_{t-1} is then made from it in place
  std::vector<T> GA(static_cast<size_t>(N) * ldp), PP(static_cast<size_t>(N) * ldp);
  for (int b = 0; b < B; ++b) {
    const T* Jn = J + static_cast<size_t>(b) * N * N;
    const T* Q = qs + static_cast<size_t>(b) * (L + 1) * nk;
    bool have_gQ = false;                           // Q_L feeds nothing but the logs
    int j = nq - 1;
    for (int t = L; t >= 1; --t) {
      T* gA = GA.data() + (t - 1) * k;              // row stride ldp; holds ∂/∂Q_t on entry (t < L)
      const T* Qt = Q + t * nk;
      if (is_qr[t]) {
        const T* gj_ = g + (static_cast<size_t>(j) * B + b) * k;
        if (!have_gQ) {                             // X = Q diag(g)
          for (int i = 0; i < N; ++i) mul_row(gA + i * ldp, Qt + i * ldq, gj_, k);
        } else {                                    // X = gQ - Q C, C = tril(W,-1) + tril(W,-1)ᵀ - diag(g - diag W)
          gemm('N', 'T', k, k, N, T(1), Qt, ldq, gA, ldp, T(0), W.data(), k);   // W = gQᵀ Q, row-major
          for (int a = 0; a < k; ++a) {
            W[a * k + a] = W[a * k + a] - gj_[a];   // C_aa = -(g_a - W_aa)
            for (int c = a + 1; c < k; ++c) W[a * k + c] = W[c * k + a];
          }
          gemm('N', 'N', k, N, k, T(-1), W.data(), k, Qt, ldq, T(1), gA, ldp);     // C symmetric
        }
        const T* R = rs + (static_cast<size_t>(j) * B + b) * k * k;
        trsm('L', 'U', 'N', k, N, R, k, gA, ldp);   // gA Rᵀ = X  (column-major: R gAᵀ = Xᵀ)
        --j;
      }                                             // else gA_t = ∂/∂Q_t, already in place
      gemm('N', 'T', k, N, N, T(1), gA, ldp, Jn, N, T(0), V.data(), k);            // V = Jᵀ gA
      const T* Qp = Q + (t - 1) * nk;
      const T* st = s + (static_cast<size_t>(t - 1) * B + b) * N;
      T* gst = gs + (static_cast<size_t>(t - 1) * B + b) * N;
      for (int i = 0; i < N; ++i) gst[i] = dot(V.data() + i * k, Qp + i * ldq, k);   // ∂/∂s_t
      for (int i = 0; i < N; ++i) scale_row(PP.data() + (t - 1) * k + i * ldp, Qp + i * ldq, st[i], k);   // P_t again
      if (t > 1)                                    // ∂/∂Q_{t-1} = s ⊙ Jᵀ gA, into slot t-2
        for (int i = 0; i < N; ++i) scale_row(gA - k + i * ldp, V.data() + i * k, st[i], k);
      have_gQ = true;
    }
    // ∂J = Σ_t gA_t P_tᵀ: one gemm over the (N, L·k) blocks
    gemm('T', 'N', N, N, ldp, T(1), PP.data(), ldp, GA.data(), ldp, T(0),
         gj + static_cast<size_t>(b) * N * N, N);
  }
}

std::vector<bool> qr_mask(int64_t L, c10::IntArrayRef qr_steps) {
  std::vector<bool> m(L + 1, false);
  for (int64_t t : qr_steps) m[t] = true;
  return m;
}

void check(const at::Tensor& x, const at::Tensor& like, const char* name) {
  TORCH_CHECK(x.device().is_cpu() && x.is_contiguous() && x.scalar_type() == like.scalar_type(), name,
              " must be a contiguous CPU tensor of the data's dtype");
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, int64_t> window_forward(
    const at::Tensor& S, const at::Tensor& Jb, const at::Tensor& Q0, c10::IntArrayRef qr_steps) {
  check(S, S, "S");
  check(Jb, S, "Jb");
  check(Q0, S, "Q0");
  const int64_t L = S.size(0), B = S.size(1), N = S.size(2), k = Q0.size(2), nq = qr_steps.size();
  auto Qs = at::empty({B, L + 1, N, k}, S.options());
  auto Rs = at::empty({nq, B, k, k}, S.options());
  auto diag = at::empty({nq, B, k}, S.options().dtype(at::kDouble));
  const auto m = qr_mask(L, qr_steps);
  int64_t failed = S.scalar_type() == at::kFloat ? forward_impl<float>(S, Jb, Q0, m, Qs, Rs, diag)
                                                 : forward_impl<double>(S, Jb, Q0, m, Qs, Rs, diag);
  return {Qs, Rs, diag, failed};
}

std::tuple<at::Tensor, at::Tensor> window_backward(const at::Tensor& S, const at::Tensor& Jb, const at::Tensor& Qs,
                                                   const at::Tensor& Rs, const at::Tensor& g,
                                                   c10::IntArrayRef qr_steps) {
  for (auto* x : {&Jb, &Qs, &Rs, &g}) check(*x, S, "every operand");
  auto gS = at::empty_like(S);
  auto gJ = at::empty_like(Jb);
  const auto m = qr_mask(S.size(0), qr_steps);
  if (S.scalar_type() == at::kFloat)
    backward_impl<float>(S, Jb, Qs, Rs, g, m, gS, gJ);
  else
    backward_impl<double>(S, Jb, Qs, Rs, g, m, gS, gJ);
  return {gS, gJ};
}

}  // namespace

TORCH_LIBRARY(floss_window, m) {
  m.def("window_forward(Tensor S, Tensor Jb, Tensor Q0, int[] qr_steps) -> (Tensor, Tensor, Tensor, int)",
        &window_forward);
  m.def("window_backward(Tensor S, Tensor Jb, Tensor Qs, Tensor Rs, Tensor g, int[] qr_steps) "
        "-> (Tensor, Tensor)", &window_backward);
}
