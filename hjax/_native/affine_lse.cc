// Fused CPU kernels for the affine log-sum-exp  lse_i = eps log sum_j exp((x_i . W_j + b_j) / eps)
// and its first derivatives (THEORY.md §0-§3; Thm 3.1 at eps = 0), as XLA FFI handlers.
//
// The atoms are taken in blocks that stay in L1 while every row of a thread passes over
// them. Per row and block, one pass forms the logits in registers and their max, a second
// pass over them (in L1) sums the exps against the row's running max, rescaled when a
// block raises it (online log-sum-exp). The backward kernels reuse the forward's
// log-sum-exp, kept with its rounding error: pi_ij = exp((z_ij - lse_i - lo_i) / eps)
// needs no max pass. A fourth kernel is the least-squares training step of packed LSE
// networks (one exp per atom-evaluation).
// Masked atoms have b_j = -inf. At eps = 0 the weights are the argmax indicator averaged
// over ties (the logits are recomputed bit-identically by the same code, so the ties the
// forward saw are the ties the backward sees; the backward then touches the ties alone).
// Rows are split over a persistent pool of threads; atoms are padded to a multiple of the
// vector width with b = -inf (they contribute nothing).
//
// Python side: hjax/_native/__init__.py (build, load) and _primitives.py (the rules).

#include <algorithm>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <thread>
#include <type_traits>
#include <vector>

#include <sched.h>
#include <unistd.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

// One 512-bit vector of T (GCC vector extensions; two 256-bit ones on AVX2 machines).
template <class T>
struct VecOf;
template <>
struct VecOf<float> {
  typedef float v __attribute__((vector_size(64)));
  typedef int32_t i __attribute__((vector_size(64)));
};
template <>
struct VecOf<double> {
  typedef double v __attribute__((vector_size(64)));
  typedef int64_t i __attribute__((vector_size(64)));
};
template <class T>
using Vec = typename VecOf<T>::v;
template <class T>
using IVec = typename VecOf<T>::i;
template <class T>
constexpr int kLanes = 64 / sizeof(T);

template <class T>
inline Vec<T> splat(T a) {
  return Vec<T>{} + a;
}
template <class T>
inline Vec<T> load(const T* p) {
  Vec<T> v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
template <class T>
inline void store(T* p, Vec<T> v) {
  std::memcpy(p, &v, sizeof(v));
}
template <class T>
inline T hsum(Vec<T> v) {
  T s = T(0);
  for (int l = 0; l < kLanes<T>; ++l) s += v[l];
  return s;
}
template <class T>
inline T hmax(Vec<T> v) {
  T m = v[0];
  for (int l = 1; l < kLanes<T>; ++l) m = std::max(m, v[l]);
  return m;
}

template <class T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// exp(x) lane-wise for x <= 88 (float) / 709 (double) or -inf: Cody-Waite reduction
// x = n ln2 + r, |r| <= ln2/2, a polynomial for e^r (float: minimax of degree 6, within
// two ulp, test_float32_gibbs_weights_are_within_a_few_ulp; double: Taylor of degree 13,
// truncation below the unit round-off), scaled by 2^n. x is clamped below where e^x underflows: exactly 0 there and at
// -inf. With AVX-512, vscalefp[sd] does the scaling (and the underflow) in one instruction.
template <class T>
inline Vec<T> exp_poly(Vec<T> x) {
  constexpr bool dbl = std::is_same_v<T, double>;
  constexpr T log2e = T(1.4426950408889634);
  constexpr T ln2_hi = dbl ? T(6.93147180369123816490e-01) : T(0.693359375f);
  constexpr T ln2_lo = dbl ? T(1.90821492927058770002e-10) : T(-2.12194440e-4f);
  constexpr T shifter = dbl ? T(6755399441055744.0) : T(12582912.0f);  // 1.5 * 2^52, 1.5 * 2^23
#if defined(__AVX512F__)
  constexpr T floor = dbl ? T(-800.0) : T(-110.0f);  // 2^n p rounds to 0 below
#else
  constexpr T floor = dbl ? T(-708.39) : T(-87.33f);  // about the smallest normal result
  const auto under = x < floor;
#endif
  const Vec<T> xc = x < floor ? splat(floor) : x;  // NaN stays NaN
  const Vec<T> n = (xc * log2e + shifter) - shifter;
  Vec<T> r = xc - n * ln2_hi;
  r = r - n * ln2_lo;
  Vec<T> p;
  if constexpr (dbl) {
    p = splat<T>(T(1.0 / 6227020800.0));
    p = p * r + T(1.0 / 479001600.0);
    p = p * r + T(1.0 / 39916800.0);
    p = p * r + T(1.0 / 3628800.0);
    p = p * r + T(1.0 / 362880.0);
    p = p * r + T(1.0 / 40320.0);
    p = p * r + T(1.0 / 5040.0);
    p = p * r + T(1.0 / 720.0);
    p = p * r + T(1.0 / 120.0);
    p = p * r + T(1.0 / 24.0);
    p = p * r + T(1.0 / 6.0);
    p = p * r + T(0.5);
    p = p * r + T(1.0);
    p = p * r + T(1.0);
  } else {
    p = splat<T>(T(0.001383684459142387f));
    p = p * r + T(0.008374815806746483f);
    p = p * r + T(0.04166822507977486f);
    p = p * r + T(0.16666419804096222f);
    p = p * r + T(0.49999991059303284f);
    p = p * r + T(1.0f);
    p = p * r + T(1.0f);
  }
#if defined(__AVX512F__)
  if constexpr (dbl)
    return reinterpret_cast<Vec<T>>(_mm512_scalef_pd(reinterpret_cast<__m512d>(p),
                                                     reinterpret_cast<__m512d>(n)));
  else
    return reinterpret_cast<Vec<T>>(_mm512_scalef_ps(reinterpret_cast<__m512>(p),
                                                     reinterpret_cast<__m512>(n)));
#else
  const IVec<T> bits = (__builtin_convertvector(n, IVec<T>) + (dbl ? 1023 : 127)) << (dbl ? 52 : 23);
  const Vec<T> scaled = p * reinterpret_cast<const Vec<T>&>(bits);
  return under ? splat<T>(T(0)) : scaled;
#endif
}

// The atoms, transposed and padded: wt[c * np + j] = W_jc, bp[j] = b_j (-inf past N).
template <class T>
struct Atoms {
  int64_t n, k, np;
  std::vector<T> wt, bp;
  Atoms(const T* W, const T* b, int64_t n_, int64_t k_, T pad)
      : n(n_), k(k_), np((n_ + kLanes<T> - 1) / kLanes<T> * kLanes<T>),
        wt(k_ * np, T(0)), bp(np, pad) {
    for (int64_t j = 0; j < n; ++j) {
      bp[j] = b[j];
      for (int64_t c = 0; c < k; ++c) wt[c * np + j] = W[j * k + c];
    }
  }
};

// Logits of one query row for the atoms j0 .. j0 + kLanes - 1: the one place they are
// formed, so that every kernel sees bit-identical logits (ties at eps = 0).
// K > 0 is the input dimension known at compile time (the loops unroll, the accumulators
// stay in registers); K = 0 reads it from the atoms.
template <int K, class T>
inline Vec<T> logits(const Atoms<T>& a, const T* x, int64_t j0) {
  const int64_t k = K > 0 ? K : a.k;
  Vec<T> z = load(a.bp.data() + j0);
  const T* w = a.wt.data() + j0;
  for (int64_t c = 0; c < k; ++c) z += x[c] * load(w + c * a.np);
  return z;
}

}  // namespace

namespace hjax_native {

// A persistent pool of worker threads, one per CPU of the process's affinity mask less the
// caller's: starting and joining threads on every call can cost as much as a whole
// 1024 x 1024 kernel. Runs are serialized (each uses every CPU); a forked child starts
// its own pool. Outside the anonymous namespace: the translation units of both dtypes share
// the one pool (get() is inline, its statics unique in the library).
class Pool {
 public:
  static Pool& get() {
    static std::mutex mu;
    static Pool* pool = nullptr;
    static pid_t owner = 0;
    std::lock_guard<std::mutex> lock(mu);
    if (pool == nullptr || owner != getpid()) {  // never destroyed: exit does not wait on it
      pool = new Pool(cpus());
      owner = getpid();
    }
    return *pool;
  }

  int size() const { return int(workers_.size()) + 1; }

  // fn(t) for t = 0 .. n - 1 (n <= size()), t = 0 on the calling thread; returns when all are done.
  template <class F>
  void run(int n, F& fn) {
    std::lock_guard<std::mutex> serial(run_mu_);
    if (n <= 1) {
      fn(0);
      return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      job_ = [&fn](int t) { fn(t); };
      active_ = n;
      pending_ = n - 1;
      ++generation_;
    }
    wake_.notify_all();
    fn(0);
    std::unique_lock<std::mutex> lock(mu_);
    done_.wait(lock, [&] { return pending_ == 0; });
  }

 private:
  explicit Pool(int n) {
    for (int t = 1; t < n; ++t) workers_.emplace_back([this, t] { work(t); });
  }

  static int cpus() {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
    return std::max(1u, std::thread::hardware_concurrency());
  }

  void work(int t) {
    int64_t seen = 0;
    for (;;) {
      std::function<void(int)> job;
      {
        std::unique_lock<std::mutex> lock(mu_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
        if (t >= active_) continue;
        job = job_;
      }
      job(t);
      std::lock_guard<std::mutex> lock(mu_);
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex run_mu_, mu_;
  std::condition_variable wake_, done_;
  std::function<void(int)> job_;
  int64_t generation_ = 0;
  int active_ = 0, pending_ = 0;
};

}  // namespace hjax_native

namespace {

using hjax_native::Pool;

int available_threads() { return Pool::get().size(); }

// fn(part, row_begin, row_end) over [0, rows) split in contiguous parts, one thread each
// when the work (rows * atoms) pays for waking threads. Returns the number of parts.
template <class F>
int64_t parallel_rows(int64_t rows, int64_t atoms, F fn) {
  Pool& pool = Pool::get();
  int64_t threads = std::min<int64_t>(pool.size(), std::max<int64_t>(rows, 1));
  if (rows * atoms < (int64_t(1) << 16)) threads = 1;
  const int64_t chunk = (rows + threads - 1) / std::max<int64_t>(threads, 1);
  auto part = [&](int t) {
    const int64_t r0 = std::min(rows, t * chunk), r1 = std::min(rows, r0 + chunk);
    fn(t, r0, std::max(r0, r1));
  };
  pool.run(int(threads), part);
  return threads;
}

template <class T>
inline bool finite(T v) {
  return v > kNegInf<T> && v < -kNegInf<T>;
}

// Ties of the row's max at eps = 0 (the forward's lse), counted on the recomputed logits.
template <int K, class T>
inline int64_t tie_count(const Atoms<T>& a, const T* x, T lse) {
  int64_t count = 0;
  for (int64_t j0 = 0; j0 < a.np; j0 += kLanes<T>) {
    const Vec<T> z = logits<K>(a, x, j0);
    for (int l = 0; l < kLanes<T>; ++l) count += z[l] == lse;
  }
  return count;
}

// lse_i = m_i + eps log S_i rounded, its rounding error lo_i (TwoSum, so that lse_i + lo_i
// carries the log-sum-exp to twice the working precision: the weights exp((z - lse)/eps)
// of the backward would otherwise be off by ulp(lse)/eps, e.g. 2e-3 in float32 at
// |lse| = 20, eps = 1e-3), and, if wanted, the entropy
// H_i = -sum_j pi_ij log pi_ij = log S - sum_j e_j s_j / S (s_j = (z_j - m)/eps,
// e_j = exp(s_j), S = sum_j e_j); log(#ties) at eps = 0.
template <int K, class T>
void lse_rows(const Atoms<T>& a, const T* x, int64_t rows, T eps, bool entropy, T* lse, T* lo,
              T* ent) {
  constexpr int V = kLanes<T>;
  // Atoms per block: the block's atoms (k + 1 vectors per V atoms) stay in L1 while every
  // row of the thread passes over them; a row's running max and sum are rescaled when a
  // block raises its max (one scalar exp per row and block).
  constexpr int64_t kBlock = 16 * V;
  const bool hard = !(eps > T(0));
  const T inv = hard ? T(1) : T(1) / eps;
  parallel_rows(rows, a.np, [&](int64_t, int64_t r0, int64_t r1) {
    if (hard) {  // eps = 0: the max, and log(#ties) for the entropy
      for (int64_t i = r0; i < r1; ++i) {
        const T* xi = x + i * a.k;
        Vec<T> mv = splat(kNegInf<T>);
        for (int64_t j0 = 0; j0 < a.np; j0 += V) {
          const Vec<T> z = logits<K>(a, xi, j0);
          mv = z > mv ? z : mv;
        }
        const T m = hmax<T>(mv);
        lse[i] = m;
        lo[i] = T(0);
        if (entropy) ent[i] = m > kNegInf<T> ? std::log(T(tie_count<K>(a, xi, m))) : T(0);
      }
      return;
    }
    const int64_t n = r1 - r0;
    std::vector<T> m(n, kNegInf<T>), S(n, T(0)), E(n, T(0));  // E = sum_j e_j s_j
    alignas(64) T zbuf[kBlock];
    for (int64_t jb = 0; jb < a.np; jb += kBlock) {
      const int64_t je = std::min(a.np, jb + kBlock);
      for (int64_t q = 0; q < n; ++q) {
        const T* xi = x + (r0 + q) * a.k;
        Vec<T> mv = splat(kNegInf<T>);
        for (int64_t j0 = jb; j0 < je; j0 += V) {
          const Vec<T> z = logits<K>(a, xi, j0);
          store(zbuf + (j0 - jb), z);
          mv = z > mv ? z : mv;
        }
        const T bm = hmax<T>(mv);
        if (!(bm > kNegInf<T>)) continue;  // every atom of the block masked
        const T m_new = std::max(m[q], bm);
        if (m_new > m[q] && S[q] > T(0)) {  // rescale to the new max
          const T shift = (m[q] - m_new) * inv, factor = std::exp(shift);
          E[q] = factor * (E[q] + S[q] * shift);
          S[q] *= factor;
        }
        m[q] = m_new;
        Vec<T> sv = splat(T(0)), tv = splat(T(0));
        for (int64_t j0 = jb; j0 < je; j0 += V) {
          const Vec<T> s = (load(zbuf + (j0 - jb)) - m_new) * inv;
          const Vec<T> e = exp_poly<T>(s);
          sv += e;
          if (entropy) tv += e > T(0) ? e * s : splat(T(0));
        }
        S[q] += hsum<T>(sv);
        if (entropy) E[q] += hsum<T>(tv);
      }
    }
    for (int64_t q = 0; q < n; ++q) {
      const int64_t i = r0 + q;
      lo[i] = T(0);
      if (!finite(m[q])) {
        lse[i] = m[q];
        if (entropy) ent[i] = T(0);
        continue;
      }
      const T r = eps * std::log(S[q]);
      const T sum = m[q] + r, back = sum - m[q];  // TwoSum(m, r)
      lse[i] = sum;
      lo[i] = (m[q] - (sum - back)) + (r - back);
      if (entropy) ent[i] = std::log(S[q]) - E[q] / S[q];
    }
  });
}


// Gibbs weights of the atoms j0 .. (times `scale`): exp((z - lse - lo)/eps), z - lse first
// (exact where the weight matters), or at eps = 0 the indicator of the ties of lse; 0 on
// masked atoms (z = -inf).
template <class T>
inline Vec<T> weights(Vec<T> z, T lse, T lo, T inv, bool hard, T scale) {
  if (hard) return (z == lse) & (z > kNegInf<T>) ? splat(scale) : splat(T(0));
  return scale * exp_poly<T>(((z - lse) - lo) * inv);
}

// The scale of row i's weights (c_i, divided by the number of ties at eps = 0), or 0 if
// the row contributes nothing (c_i = 0 or every atom masked).
template <int K, class T>
inline T row_scale(const Atoms<T>& a, const T* xi, T c, T lse, bool hard) {
  if (c == T(0) || !finite(lse)) return T(0);
  return hard ? c / T(std::max<int64_t>(1, tie_count<K>(a, xi, lse))) : c;
}

// out_i = sum_j pi_ij (dx_i . W_j + x_i . dW_j + db_j): the JVP of lse in (x, W, b).
template <int K, class T>
void contract_rows(const Atoms<T>& a, const Atoms<T>& da, const T* x, const T* dx, int64_t rows,
                   T eps, const T* lse, const T* lo, T* out) {
  constexpr int V = kLanes<T>;
  const bool hard = !(eps > T(0));
  const T inv = hard ? T(1) : T(1) / eps;
  parallel_rows(rows, a.np, [&](int64_t, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      const T* xi = x + i * a.k;
      const T* dxi = dx + i * a.k;
      const T scale = row_scale<K>(a, xi, T(1), lse[i], hard);
      if (scale == T(0)) {
        out[i] = T(0);
        continue;
      }
      Vec<T> acc = splat(T(0));
      for (int64_t j0 = 0; j0 < a.np; j0 += V) {
        const Vec<T> p = weights(logits<K>(a, xi, j0), lse[i], lo[i], inv, hard, scale);
        Vec<T> dz = load(da.bp.data() + j0);
        for (int64_t c = 0; c < (K > 0 ? K : a.k); ++c)
          dz += dxi[c] * load(a.wt.data() + c * a.np + j0) + xi[c] * load(da.wt.data() + c * a.np + j0);
        acc += p > T(0) ? p * dz : splat(T(0));
      }
      out[i] = hsum<T>(acc);
    }
  });
}

// Rows i0 .. i0 + R - 1 of backprop_rows over the atoms jb .. je - 1: the atoms' logits
// are loaded once for the R rows and their cotangents accumulated once, into this thread's
// aw (dW, transposed) and ab; dx is accumulated. scale, target, low: per row, the weights'
// factor (0 for a row that contributes nothing), the lse they are taken against and its
// rounding error.
template <int K, int R, bool DX, bool DW, class T>
inline void backprop_tile(const Atoms<T>& a, const T* x, const T* scale, const T* target,
                          const T* low, int64_t i0, int64_t jb, int64_t je, T inv, T* dx,
                          T* aw, T* ab) {
  constexpr int V = kLanes<T>;
  constexpr int KR = R * (K > 0 ? K : 1);
  const int64_t k = K > 0 ? K : a.k, np = a.np;
  const T* xr[R];
  for (int r = 0; r < R; ++r) xr[r] = x + (i0 + r) * k;
  Vec<T> local[KR];
  std::vector<Vec<T>> heap(K > 0 || !DX ? 0 : R * k);
  Vec<T>* dxv = K > 0 ? local : heap.data();
  if constexpr (DX)
    for (int64_t q = 0; q < R * k; ++q) dxv[q] = splat(T(0));
  for (int64_t j0 = jb; j0 < je; j0 += V) {
    Vec<T> p[R];
    Vec<T> psum = splat(T(0));
    for (int r = 0; r < R; ++r) {
      const Vec<T> z = logits<K>(a, xr[r], j0);
      p[r] = weights(z, target[i0 + r], low[i0 + r], inv, false, scale[i0 + r]);
      psum += p[r];
    }
    store(ab + j0, load(ab + j0) + psum);
    for (int64_t cc = 0; cc < k; ++cc) {
      if constexpr (DW) {
        T* awj = aw + cc * np + j0;
        Vec<T> g = load(awj);
        for (int r = 0; r < R; ++r) g += p[r] * xr[r][cc];
        store(awj, g);
      }
      if constexpr (DX) {
        const Vec<T> w = load(a.wt.data() + cc * np + j0);
        for (int r = 0; r < R; ++r) dxv[r * k + cc] += p[r] * w;
      }
    }
  }
  if constexpr (DX)
    for (int r = 0; r < R; ++r)
      for (int64_t cc = 0; cc < k; ++cc) dx[(i0 + r) * k + cc] += hsum<T>(dxv[r * k + cc]);
}

// Bit mask of the lanes of z equal to v.
template <class T>
inline uint32_t equal_lanes(Vec<T> z, T v) {
#if defined(__AVX512F__)
  if constexpr (std::is_same_v<T, double>)
    return _mm512_cmp_pd_mask(reinterpret_cast<__m512d>(z), _mm512_set1_pd(v), _CMP_EQ_OQ);
  else
    return _mm512_cmp_ps_mask(reinterpret_cast<__m512>(z), _mm512_set1_ps(v), _CMP_EQ_OQ);
#else
  uint32_t mask = 0;
  for (int l = 0; l < kLanes<T>; ++l) mask |= uint32_t(z[l] == v) << l;
  return mask;
#endif
}

// backprop_rows at eps = 0: row i's weights are 1/#ties on the atoms tied at its max (the
// forward's lse, found again on the bit-identical logits; padded and masked atoms are -inf
// and never tie with a finite lse) and 0 elsewhere, so one pass over the logits finds the
// ties and the cotangents go to them alone.
template <int K, class T>
void backprop_ties(const Atoms<T>& a, const T* x, const T* c, int64_t rows, const T* lse,
                   bool with_dx, bool with_dW, T* dx, T* dW, T* db) {
  constexpr int V = kLanes<T>;
  const int64_t k = K > 0 ? K : a.k, n = a.n, np = a.np;
  std::vector<std::vector<T>> acc(available_threads());  // per thread: db, then dW
  const int64_t parts = parallel_rows(rows, np, [&](int64_t t, int64_t r0, int64_t r1) {
    std::vector<T>& mine = acc[t];
    mine.assign((with_dW ? k + 1 : 1) * n, T(0));
    std::vector<int64_t> ties;
    for (int64_t i = r0; i < r1; ++i) {
      if (c[i] == T(0) || !finite(lse[i])) continue;
      const T* xi = x + i * k;
      ties.clear();
      for (int64_t j0 = 0; j0 < np; j0 += V)
        for (uint32_t m = equal_lanes(logits<K>(a, xi, j0), lse[i]); m != 0; m &= m - 1)
          ties.push_back(j0 + __builtin_ctz(m));
      if (ties.empty()) continue;
      const T s = c[i] / T(ties.size());
      for (const int64_t j : ties) {
        mine[j] += s;
        for (int64_t cc = 0; cc < k; ++cc) {
          if (with_dW) mine[n + j * k + cc] += s * xi[cc];
          if (with_dx) dx[i * k + cc] += s * a.wt[cc * np + j];
        }
      }
    }
  });
  for (int64_t q = 0; q < (with_dW ? k + 1 : 1) * n; ++q) {
    T sum = T(0);
    for (int64_t t = 0; t < parts; ++t) sum += acc[t][q];
    (q < n ? db[q] : dW[q - n]) = sum;
  }
}

// The transpose of contract_rows in (dx, dW, db) for cotangents c_i:
// dx_i = c_i sum_j pi_ij W_j, dW_j = sum_i c_i pi_ij x_i, db_j = sum_i c_i pi_ij.
// Atoms in blocks that stay in L1 while every row of the thread passes over them (eps = 0:
// backprop_ties). dx (DX) and dW (DW) are computed only if asked for (else left 0): each
// costs a multiply-add per input coordinate and atom-evaluation, as much as the logits.
template <int K, bool DX, bool DW, class T>
void backprop_rows(const Atoms<T>& a, const T* x, const T* c, int64_t rows, T eps, const T* lse,
                   const T* lo, T* dx, T* dW, T* db) {
  constexpr int R = 4;  // rows per tile (R = 2 for K = 8, to keep dx in registers: slower)
  constexpr int64_t kBlock = 16 * kLanes<T>;
  const int64_t k = K > 0 ? K : a.k, np = a.np;
  std::fill(dx, dx + rows * k, T(0));
  std::fill(dW, dW + a.n * k, T(0));
  if (!(eps > T(0))) return backprop_ties<K>(a, x, c, rows, lse, DX, DW, dx, dW, db);
  const T inv = T(1) / eps;
  std::vector<T> scale(rows), target(rows), low(rows);
  std::vector<std::vector<T>> acc_w(available_threads()), acc_b(available_threads());
  const int64_t parts = parallel_rows(rows, np, [&](int64_t t, int64_t r0, int64_t r1) {
    for (int64_t i = r0; i < r1; ++i) {
      // A row that contributes nothing (c_i = 0 or every atom masked) gets weights exactly
      // 0: exp(z - inf) = 0.
      const bool dead = c[i] == T(0) || !finite(lse[i]);
      scale[i] = dead ? T(0) : c[i];
      target[i] = dead ? -kNegInf<T> : lse[i];
      low[i] = dead ? T(0) : lo[i];
    }
    std::vector<T>& aw = acc_w[t];
    std::vector<T>& ab = acc_b[t];
    aw.assign(DW ? k * np : 0, T(0));
    ab.assign(np, T(0));
    for (int64_t jb = 0; jb < np; jb += kBlock) {
      const int64_t je = std::min(np, jb + kBlock);
      int64_t i = r0;
      for (; i + R <= r1; i += R)
        backprop_tile<K, R, DX, DW>(a, x, scale.data(), target.data(), low.data(), i, jb, je,
                                    inv, dx, aw.data(), ab.data());
      for (; i < r1; ++i)
        backprop_tile<K, 1, DX, DW>(a, x, scale.data(), target.data(), low.data(), i, jb, je,
                                    inv, dx, aw.data(), ab.data());
    }
  });
  for (int64_t j = 0; j < a.n; ++j) {
    T sb = T(0);
    for (int64_t t = 0; t < parts; ++t) sb += acc_b[t][j];
    db[j] = sb;
    for (int64_t cc = 0; DW && cc < k; ++cc) {
      T sw = T(0);
      for (int64_t t = 0; t < parts; ++t) sw += acc_w[t][cc * np + j];
      dW[j * k + cc] = sw;
    }
  }
}

// Least squares of packed LSE networks (one training step of hjax.train_sweep): segment s
// holds atoms o_s .. o_{s+1} - 1 with temperature eps_s, f_is = lse_s(x_i),
// loss_s = mean_i (f_is - y_i)^2 and its gradient in the atoms,
// dL_s/db_j = sum_i g_is pi_ij, dL_s/dW_j = sum_i g_is pi_ij x_i, g_is = 2 (f_is - y_i) / B.
// One exp per atom-evaluation: the row's e_j = exp((z_j - m)/eps) stay in L1 between the
// exp-sum and the accumulation of pi_ij = e_j / S. At eps = 0 pi is uniform on the ties.
template <int K, class T>
void packed_mse_rows(const std::vector<Atoms<T>>& segs, const T* x, const T* y, int64_t rows,
                     const T* eps, T* loss, T* dW, T* db, const int32_t* offsets) {
  constexpr int V = kLanes<T>;
  const int64_t k = K > 0 ? K : segs[0].k, n_seg = segs.size();
  int64_t np_max = 0, work = 0;
  for (const auto& a : segs) {
    np_max = std::max(np_max, a.np);
    work += a.np;
  }
  const int threads = available_threads();
  // Per thread and segment: the atoms' accumulated (db, dW^T) and the sum of squares.
  std::vector<std::vector<std::vector<T>>> acc(threads);
  std::vector<std::vector<double>> sq(threads);
  const int64_t parts = parallel_rows(rows, work, [&](int64_t t, int64_t r0, int64_t r1) {
    auto& mine = acc[t];
    mine.resize(n_seg);
    for (int64_t s = 0; s < n_seg; ++s) mine[s].assign((k + 1) * segs[s].np, T(0));
    sq[t].assign(n_seg, 0.0);
    constexpr int R = 4;  // rows accumulated together (each atom's gradient read once)
    std::vector<T> e(R * np_max);
    for (int64_t i0 = r0; i0 < r1; i0 += R) {
      const int tile = int(std::min<int64_t>(R, r1 - i0));
      for (int64_t s = 0; s < n_seg; ++s) {
        const Atoms<T>& a = segs[s];
        const bool hard = !(eps[s] > T(0));
        const T inv = hard ? T(1) : T(1) / eps[s];
        T scale[R] = {};
        for (int r = 0; r < tile; ++r) {
          const T* xi = x + (i0 + r) * k;
          T* er = e.data() + r * a.np;
          Vec<T> mv = splat(kNegInf<T>);
          for (int64_t j0 = 0; j0 < a.np; j0 += V) {
            const Vec<T> z = logits<K>(a, xi, j0);
            store(er + j0, z);
            mv = z > mv ? z : mv;
          }
          const T m = hmax<T>(mv);
          Vec<T> sv = splat(T(0));
          for (int64_t j0 = 0; j0 < a.np; j0 += V) {
            const Vec<T> z = load(er + j0);
            const Vec<T> w = hard ? ((z == m) & (z > kNegInf<T>) ? splat(T(1)) : splat(T(0)))
                                  : exp_poly<T>((z - m) * inv);
            store(er + j0, w);
            sv += w;
          }
          const T S = hsum<T>(sv);
          const T f = hard || !finite(m) ? m : m + eps[s] * std::log(S);
          const T res = f - y[i0 + r];
          sq[t][s] += double(res) * double(res);
          scale[r] = T(2) * res / (T(rows) * S);
        }
        T* ab = mine[s].data();
        for (int64_t j0 = 0; j0 < a.np; j0 += V) {
          Vec<T> p[R];
          Vec<T> psum = splat(T(0));
          for (int r = 0; r < R; ++r) {
            p[r] = r < tile ? scale[r] * load(e.data() + r * a.np + j0) : splat(T(0));
            psum += p[r];
          }
          store(ab + j0, load(ab + j0) + psum);
          for (int64_t c = 0; c < k; ++c) {
            Vec<T> g = splat(T(0));
            for (int r = 0; r < tile; ++r) g += p[r] * x[(i0 + r) * k + c];
            T* aw = ab + (c + 1) * a.np + j0;
            store(aw, load(aw) + g);
          }
        }
      }
    }
  });
  for (int64_t s = 0; s < n_seg; ++s) {
    const Atoms<T>& a = segs[s];
    double total = 0.0;
    for (int64_t t = 0; t < parts; ++t) total += sq[t][s];
    loss[s] = T(total / double(rows));
    for (int64_t j = 0; j < a.n; ++j) {
      const int64_t row = offsets[s] + j;
      T sb = T(0);
      for (int64_t t = 0; t < parts; ++t) sb += acc[t][s][j];
      db[row] = sb;
      for (int64_t c = 0; c < k; ++c) {
        T sw = T(0);
        for (int64_t t = 0; t < parts; ++t) sw += acc[t][s][(c + 1) * a.np + j];
        dW[row * k + c] = sw;
      }
    }
  }
}

// f<K>() for the input dimensions compiled with unrolled loops, else f<0>().
template <class F>
ffi::Error by_dimension(int64_t k, F f) {
  switch (k) {
    case 1: return f(std::integral_constant<int, 1>{});
    case 2: return f(std::integral_constant<int, 2>{});
    case 3: return f(std::integral_constant<int, 3>{});
    case 4: return f(std::integral_constant<int, 4>{});
    case 8: return f(std::integral_constant<int, 8>{});
    default: return f(std::integral_constant<int, 0>{});
  }
}

template <ffi::DataType D>
using Buf = ffi::Buffer<D>;
template <ffi::DataType D>
using Res = ffi::Result<ffi::Buffer<D>>;

template <ffi::DataType D>
ffi::Error LseImpl(Buf<D> x, Buf<D> W, Buf<D> b, Buf<D> eps, bool entropy, Res<D> lse,
                   Res<D> lo, Res<D> ent) {
  using T = ffi::NativeType<D>;
  const auto xd = x.dimensions(), wd = W.dimensions();
  if (xd.size() != 2 || wd.size() != 2 || xd[1] != wd[1])
    return ffi::Error::InvalidArgument("affine_lse: x must be (B, k) and W (N, k)");
  Atoms<T> a(W.typed_data(), b.typed_data(), wd[0], wd[1], kNegInf<T>);
  T* ent_out = ent->typed_data();
  if (!entropy) std::fill(ent_out, ent_out + xd[0], T(0));
  return by_dimension(a.k, [&](auto K) {
    lse_rows<K()>(a, x.typed_data(), xd[0], eps.typed_data()[0], entropy, lse->typed_data(),
                  lo->typed_data(), ent_out);
    return ffi::Error::Success();
  });
}

template <ffi::DataType D>
ffi::Error ContractImpl(Buf<D> x, Buf<D> W, Buf<D> b, Buf<D> eps, Buf<D> lse, Buf<D> lo, Buf<D> dx,
                        Buf<D> dW, Buf<D> db, Res<D> out) {
  using T = ffi::NativeType<D>;
  const auto xd = x.dimensions(), wd = W.dimensions();
  Atoms<T> a(W.typed_data(), b.typed_data(), wd[0], wd[1], kNegInf<T>);
  Atoms<T> da(dW.typed_data(), db.typed_data(), wd[0], wd[1], T(0));
  return by_dimension(a.k, [&](auto K) {
    contract_rows<K()>(a, da, x.typed_data(), dx.typed_data(), xd[0], eps.typed_data()[0],
                       lse.typed_data(), lo.typed_data(), out->typed_data());
    return ffi::Error::Success();
  });
}

template <ffi::DataType D>
ffi::Error BackpropImpl(Buf<D> x, Buf<D> W, Buf<D> b, Buf<D> eps, Buf<D> lse, Buf<D> lo, Buf<D> c,
                        bool with_dx, bool with_dW, Res<D> dx, Res<D> dW, Res<D> db) {
  using T = ffi::NativeType<D>;
  const auto xd = x.dimensions(), wd = W.dimensions();
  Atoms<T> a(W.typed_data(), b.typed_data(), wd[0], wd[1], kNegInf<T>);
  return by_dimension(a.k, [&](auto K) {
    auto run = [&](auto DX, auto DW) {
      backprop_rows<K(), DX(), DW()>(a, x.typed_data(), c.typed_data(), xd[0],
                                     eps.typed_data()[0], lse.typed_data(), lo.typed_data(),
                                     dx->typed_data(), dW->typed_data(), db->typed_data());
    };
    using Yes = std::true_type;
    using No = std::false_type;
    // (dx, dW), dx alone, or dW (if asked for; else 0) and db: three instantiations
    if (with_dx && with_dW) run(Yes{}, Yes{});
    else if (with_dx) run(Yes{}, No{});
    else run(No{}, Yes{});
    if (!with_dW) std::fill(dW->typed_data(), dW->typed_data() + dW->element_count(), T(0));
    return ffi::Error::Success();
  });
}

template <ffi::DataType D>
ffi::Error PackedMseImpl(Buf<D> x, Buf<D> y, Buf<D> W, Buf<D> b, Buf<D> eps,
                         ffi::Buffer<ffi::S32> offsets, Res<D> loss, Res<D> dW, Res<D> db) {
  using T = ffi::NativeType<D>;
  const auto xd = x.dimensions(), wd = W.dimensions();
  const int64_t n_seg = eps.element_count();
  const int32_t* o = offsets.typed_data();
  if (xd.size() != 2 || wd.size() != 2 || xd[1] != wd[1] || offsets.element_count() != n_seg + 1 ||
      o[0] != 0 || o[n_seg] != wd[0])
    return ffi::Error::InvalidArgument("packed_mse: x (B, k), W (N, k), offsets (S + 1,) 0 .. N");
  std::vector<Atoms<T>> segs;
  for (int64_t s = 0; s < n_seg; ++s) {
    if (o[s + 1] <= o[s]) return ffi::Error::InvalidArgument("packed_mse: an empty segment");
    segs.emplace_back(W.typed_data() + int64_t(o[s]) * wd[1], b.typed_data() + o[s],
                      o[s + 1] - o[s], wd[1], kNegInf<T>);
  }
  return by_dimension(wd[1], [&](auto K) {
    packed_mse_rows<K()>(segs, x.typed_data(), y.typed_data(), xd[0], eps.typed_data(),
                         loss->typed_data(), dW->typed_data(), db->typed_data(), o);
    return ffi::Error::Success();
  });
}

}  // namespace

#define HJAX_ARG(D) .Arg<Buf<D>>()
#define HJAX_RET(D) .Ret<Buf<D>>()
#define HJAX_ARGS4(D) HJAX_ARG(D) HJAX_ARG(D) HJAX_ARG(D) HJAX_ARG(D)
#define HJAX_RETS3(D) HJAX_RET(D) HJAX_RET(D) HJAX_RET(D)
// lse(x, W, b, eps; entropy) -> (lse, lo, H)
#define HJAX_LSE(NAME, D)                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, LseImpl<D>, \
                                ffi::Ffi::Bind() HJAX_ARGS4(D).Attr<bool>("entropy") HJAX_RETS3(D));
// contract(x, W, b, eps, lse, lo, dx, dW, db) -> out
#define HJAX_CONTRACT(NAME, D)                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, ContractImpl<D>, \
                                ffi::Ffi::Bind() HJAX_ARGS4(D) HJAX_ARGS4(D) HJAX_ARG(D) HJAX_RET(D));
// backprop(x, W, b, eps, lse, lo, c; with_dx, with_dW) -> (dx, dW, db)
#define HJAX_BACKPROP(NAME, D)                                                               \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, BackpropImpl<D>,                                        \
                                ffi::Ffi::Bind() HJAX_ARGS4(D) HJAX_ARG(D) HJAX_ARG(D) HJAX_ARG(D) \
                                    .Attr<bool>("with_dx").Attr<bool>("with_dW") HJAX_RETS3(D));

// packed_mse(x, y, W, b, eps, offsets) -> (loss, dW, db)
#define HJAX_PACKED_MSE(NAME, D)                        \
  XLA_FFI_DEFINE_HANDLER_SYMBOL(NAME, PackedMseImpl<D>,  \
                                ffi::Ffi::Bind() HJAX_ARGS4(D) HJAX_ARG(D)   \
                                    .Arg<ffi::Buffer<ffi::S32>>() HJAX_RETS3(D));

// The handlers of one dtype: hjax_{lse,contract,backprop,packed_mse}_S.
#define HJAX_HANDLERS(S, D)                  \
  HJAX_LSE(hjax_lse_##S, D)                  \
  HJAX_CONTRACT(hjax_contract_##S, D)        \
  HJAX_BACKPROP(hjax_backprop_##S, D)        \
  HJAX_PACKED_MSE(hjax_packed_mse_##S, D)

// Built as one translation unit per dtype (-DHJAX_DTYPE=32 or 64, compiled in parallel) or
// as one for both.
#if !defined(HJAX_DTYPE) || HJAX_DTYPE == 32
HJAX_HANDLERS(f32, ffi::F32)
#endif
#if !defined(HJAX_DTYPE) || HJAX_DTYPE == 64
HJAX_HANDLERS(f64, ffi::F64)
#endif
