"""CUDA C++ source of the fused one-thread-per-fit kernel (see :mod:`._lm_cuda`).

It is the compiled-CPU kernel of :mod:`._lm_numba` transcribed to CUDA: same
algorithm (:mod:`._lm_portable` is the specification), the gradient and the
packed lower triangle of the curvature kept in registers (the parameter count
is a template constant), and the windows of a thread block staged through
shared memory by coalesced loads.

Compiled with ``-DSTEMSCALE_HOST`` the same text builds as plain C++ for the
CPU (``lm_host``), which is how the tests check the kernel's logic on machines
without a GPU.
"""

CUDA_SOURCE = r"""
#ifndef REAL
#define REAL float
#endif
#ifndef DATA_T
#define DATA_T float
#endif
typedef REAL real_t;
typedef DATA_T data_t;

#ifdef STEMSCALE_HOST
#include <math.h>
#define __device__
#define __forceinline__ inline
#define R_NAN ((real_t)NAN)
#define R_INF ((real_t)INFINITY)
#else
// NVRTC compiles without the C headers: build NaN and Inf from their bits
#define R_NAN ((real_t)__longlong_as_double(0x7ff8000000000000LL))
#define R_INF ((real_t)__longlong_as_double(0x7ff0000000000000LL))
#endif

#ifdef REAL_IS_FLOAT
#define EXP expf
#define LOG logf
#define SQRT sqrtf
#define FABS fabsf
#define COS cosf
#define SIN sinf
#define REAL_MAX 3.402823466e+38f
#else
#define EXP exp
#define LOG log
#define SQRT sqrt
#define FABS fabs
#define COS cos
#define SIN sin
#define REAL_MAX 1.7976931348623157e+308
#endif

#define ST_RUNNING (-1)
#define ST_CONVERGED 0
#define ST_MAX_ITERATIONS 1
#define ST_SINGULAR 2
#define ST_DIVERGED 3
#define ST_LEFT_WINDOW 4
#define ST_INVALID 5
#define ST_NO_PEAK 6
#define MAX_EDGE 64
#define LAMBDA_START 1e-3
#define LAMBDA_FACTOR 10

__device__ __forceinline__ bool is_finite(real_t x) { return FABS(x) <= REAL_MAX; }
__device__ __forceinline__ real_t clampr(real_t v, real_t lo, real_t hi) {
    v = v < lo ? lo : v;
    return v > hi ? hi : v;
}

template <int MODEL> struct NParams { static const int value = 6; };
template <> struct NParams<0> { static const int value = 5; };
template <> struct NParams<2> { static const int value = 7; };

#define TRI(a, c) ((a) * ((a) + 1) / 2 + (c))

// Objective at p; gradient g and packed lower triangle of H.  Returns +inf when
// the Poisson model is not positive.
template <int MODEL>
__device__ __forceinline__ real_t accumulate(const real_t* p, const data_t* d, const real_t* wt,
                                             const real_t* off, bool mle, int h, int w,
                                             real_t* ex, real_t* ey, real_t* g, real_t* H) {
    const int P = NParams<MODEL>::value;
    const real_t amp = p[0], x0 = p[1], y0 = p[2];
    const real_t sx = p[3];
    const real_t sy = (MODEL == 0) ? p[3] : p[4];
    const real_t bg = (MODEL == 0) ? p[4] : p[5];
    real_t cth = 1, sth = 0;
    if (MODEL == 2) { cth = COS(p[6]); sth = SIN(p[6]); }
    const real_t isx = (real_t)1 / sx, isy = (real_t)1 / sy;
    const real_t isx2 = isx * isx, isy2 = isy * isy;
    if (MODEL != 2) {
        for (int j = 0; j < w; ++j) {
            const real_t dx = j - x0;
            ex[j] = EXP((real_t)-0.5 * dx * dx * isx2);
        }
        for (int i = 0; i < h; ++i) {
            const real_t dy = i - y0;
            ey[i] = EXP((real_t)-0.5 * dy * dy * isy2);
        }
    }
#pragma unroll
    for (int a = 0; a < P; ++a) g[a] = 0;
#pragma unroll
    for (int a = 0; a < P * (P + 1) / 2; ++a) H[a] = 0;
    real_t chi2 = 0;
    real_t jr[P];
    for (int i = 0; i < h; ++i) {
        const real_t dy = i - y0;
        for (int j = 0; j < w; ++j) {
            const int k = i * w + j;
            const real_t dx = j - x0;
            real_t u = 0, v = 0, gk;
            if (MODEL == 2) {
                u = dx * cth + dy * sth;
                v = -dx * sth + dy * cth;
                gk = EXP((real_t)-0.5 * (u * u * isx2 + v * v * isy2));
            } else {
                gk = ey[i] * ex[j];
            }
            const real_t ag = amp * gk;
            const real_t f = off ? ag + bg + off[k] : ag + bg;
            const real_t dk = (real_t)d[k];
            real_t rw, hw;
            if (mle) {
                if (!(f > 0)) return R_INF;
                if (dk > 0) chi2 += (real_t)2 * ((f - dk) - dk * LOG(f / dk));
                else chi2 += (real_t)2 * (f - dk);
                hw = (real_t)1 / f;
                rw = dk * hw - (real_t)1;
            } else {
                const real_t wk = wt ? wt[k] : (real_t)1;
                const real_t r = dk - f;
                rw = wk * r;
                chi2 += rw * r;
                hw = wk;
            }
            if (MODEL == 2) {
                jr[0] = gk;
                jr[1] = ag * (u * cth * isx2 - v * sth * isy2);
                jr[2] = ag * (u * sth * isx2 + v * cth * isy2);
                jr[3] = ag * u * u * isx2 * isx;
                jr[4] = ag * v * v * isy2 * isy;
                jr[5] = 1;
                jr[6] = ag * u * v * (isy2 - isx2);
            } else {
                const real_t jx = ag * dx * isx2, jy = ag * dy * isy2;
                jr[0] = gk; jr[1] = jx; jr[2] = jy;
                if (MODEL == 1) { jr[3] = jx * dx * isx; jr[4] = jy * dy * isy; jr[5] = 1; }
                else { jr[3] = (jx * dx + jy * dy) * isx; jr[4] = 1; }
            }
#pragma unroll
            for (int a = 0; a < P; ++a) {
                g[a] += rw * jr[a];
                const real_t ta = hw * jr[a];
#pragma unroll
                for (int c = 0; c <= a; ++c) H[TRI(a, c)] += ta * jr[c];
            }
        }
    }
    return chi2;
}

// Scaled damped Cholesky solve, as _lm_portable.solve_scaled.
template <int P>
__device__ __forceinline__ bool solve(const real_t* H, const real_t* g, real_t lam,
                                      const int* freem, real_t eps, real_t* delta) {
    real_t s[P], L[P * (P + 1) / 2];
    bool ok = true;
#pragma unroll
    for (int k = 0; k < P; ++k) {
        s[k] = 0;
        if (freem[k]) {
            const real_t hkk = H[TRI(k, k)];
            if (is_finite(hkk) && hkk > 0) s[k] = (real_t)1 / SQRT(hkk);
            else ok = false;
        }
    }
    if (!is_finite(lam)) ok = false;
    const real_t thresh = eps * ((real_t)1 + lam);
#pragma unroll
    for (int j = 0; j < P; ++j) {
        real_t sjj = freem[j] ? (real_t)1 + lam : (real_t)1;
#pragma unroll
        for (int k = 0; k < j; ++k) sjj -= L[TRI(j, k)] * L[TRI(j, k)];
        if (!(sjj > thresh)) { ok = false; sjj = 1; }
        const real_t ljj = SQRT(sjj);
        L[TRI(j, j)] = ljj;
#pragma unroll
        for (int i = j + 1; i < P; ++i) {
            real_t aij = (freem[i] && freem[j]) ? H[TRI(i, j)] * s[i] * s[j] : (real_t)0;
#pragma unroll
            for (int k = 0; k < j; ++k) aij -= L[TRI(i, k)] * L[TRI(j, k)];
            L[TRI(i, j)] = aij / ljj;
        }
    }
#pragma unroll
    for (int i = 0; i < P; ++i) {
        real_t acc = g[i] * s[i];
#pragma unroll
        for (int k = 0; k < i; ++k) acc -= L[TRI(i, k)] * delta[k];
        delta[i] = acc / L[TRI(i, i)];
    }
#pragma unroll
    for (int i = P - 1; i >= 0; --i) {
        real_t acc = delta[i];
#pragma unroll
        for (int k = i + 1; k < P; ++k) acc -= L[TRI(k, i)] * delta[k];
        delta[i] = acc / L[TRI(i, i)];
    }
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const real_t v = delta[k] * s[k];
        delta[k] = (ok && is_finite(v)) ? v : (real_t)0;
    }
    return ok;
}

// One fit, as _lm_numba._fit_one.  p holds the start values and receives the result.
template <int MODEL>
__device__ __forceinline__ void fit_one(const data_t* d, const real_t* wt, const real_t* off,
                                        bool mle, int h, int w,
                                        real_t* p, const real_t* lo, const real_t* hi,
                                        const int* freem, int max_it, real_t tol, real_t eps,
                                        int* out_state, real_t* out_chi2, int* out_it) {
    const int P = NParams<MODEL>::value;
    const int M = h * w;
    real_t ex[MAX_EDGE], ey[MAX_EDGE];
    real_t g[P], gt[P], pt[P], delta[P], H[P * (P + 1) / 2], Ht[P * (P + 1) / 2];
    bool valid = true;
    real_t dmax = 0;
#pragma unroll
    for (int k = 0; k < P; ++k) {
        p[k] = clampr(p[k], lo[k], hi[k]);
        if (!is_finite(p[k])) valid = false;
    }
    for (int k = 0; k < M; ++k) {
        const real_t dk = (real_t)d[k];
        if (!is_finite(dk) || (mle && dk < 0)) valid = false;
        else dmax = FABS(dk) > dmax ? FABS(dk) : dmax;
        if (wt && !(is_finite(wt[k]) && wt[k] >= 0)) valid = false;
        if (off && !is_finite(off[k])) valid = false;
    }
    real_t chi2 = 0;
    if (valid) {
        chi2 = accumulate<MODEL>(p, d, wt, off, mle, h, w, ex, ey, g, H);
        valid = is_finite(chi2);
    }
    if (!valid) {
#pragma unroll
        for (int k = 0; k < P; ++k) p[k] = R_NAN;
        *out_state = ST_INVALID; *out_chi2 = R_NAN; *out_it = 0;
        return;
    }
    real_t lam = (real_t)LAMBDA_START;
    int state = ST_RUNNING, it = 0;
    while (it < max_it) {
        ++it;
        // parameters on a bound whose gradient pushes outwards sit this step out
        int fit_k[P];
#pragma unroll
        for (int k = 0; k < P; ++k) {
            const bool held = (p[k] <= lo[k] && g[k] < 0) || (p[k] >= hi[k] && g[k] > 0);
            fit_k[k] = freem[k] && !held;
        }
        const bool ok = solve<P>(H, g, lam, fit_k, eps, delta);
        bool small = true;
#pragma unroll
        for (int k = 0; k < P; ++k) {
            const real_t v = clampr(p[k] + delta[k], lo[k], hi[k]);
            pt[k] = v;
            if (freem[k] && !(FABS(v - p[k]) <= tol * (FABS(p[k]) + tol))) small = false;
        }
        const real_t chit = accumulate<MODEL>(pt, d, wt, off, mle, h, w, ex, ey, gt, Ht);
        const bool accept = ok && is_finite(chit) && chit <= chi2;
        bool ftol = false;
        if (accept) {
            ftol = (chi2 - chit) <= tol * chit;
#pragma unroll
            for (int a = 0; a < P; ++a) { p[a] = pt[a]; g[a] = gt[a]; }
#pragma unroll
            for (int a = 0; a < P * (P + 1) / 2; ++a) H[a] = Ht[a];
            chi2 = chit;
            lam = lam / (real_t)LAMBDA_FACTOR;
        } else {
            lam = lam * (real_t)LAMBDA_FACTOR;
        }
        if (!ok) { state = ST_SINGULAR; break; }
        if (ftol || small) { state = ST_CONVERGED; break; }
    }
    if (state == ST_RUNNING) state = ST_MAX_ITERATIONS;
    bool finite = true;
#pragma unroll
    for (int k = 0; k < P; ++k) if (!is_finite(p[k])) finite = false;
    if (!finite) {
#pragma unroll
        for (int k = 0; k < P; ++k) p[k] = R_NAN;
        *out_state = ST_DIVERGED; *out_chi2 = chi2; *out_it = it;
        return;
    }
    if (state == ST_CONVERGED || state == ST_MAX_ITERATIONS) {
        if (!(p[0] > (real_t)1e-6 * dmax) || dmax == 0)
            state = ST_NO_PEAK;
        else if (p[1] < (real_t)-0.5 || p[1] > w - (real_t)0.5 || p[2] < (real_t)-0.5 ||
                 p[2] > h - (real_t)0.5)
            state = ST_LEFT_WINDOW;
    }
    p[3] = FABS(p[3]);
    if (MODEL != 0) p[4] = FABS(p[4]);
    *out_state = state; *out_chi2 = chi2; *out_it = it;
}

// Everything one launch needs; the entry points take plain arguments (what
// CuPy passes) and pack them here.
struct Batch {
    const data_t* data;
    const real_t* weights;  // (n, M) or null
    const real_t* offsets;  // (n, M) or null
    const real_t* init;     // (n, P)
    const real_t* lo;       // (lo_rows, P)
    const real_t* hi;       // (hi_rows, P)
    const int* freem;       // (P,)
    real_t* out_p;
    int* out_state;
    real_t* out_chi2;
    int* out_it;
    long long n;
    int h, w, mle, lo_rows, hi_rows, max_it;
    real_t tol, eps;
};

template <int MODEL>
__device__ __forceinline__ void run_fit(long long i, const data_t* d, const Batch& b) {
    const int P = NParams<MODEL>::value;
    const long long M = (long long)b.h * b.w;
    real_t p[P];
#pragma unroll
    for (int k = 0; k < P; ++k) p[k] = b.init[i * P + k];
    const real_t* wt = b.weights ? b.weights + i * M : (const real_t*)0;
    const real_t* off = b.offsets ? b.offsets + i * M : (const real_t*)0;
    fit_one<MODEL>(d, wt, off, b.mle != 0, b.h, b.w, p, b.lo + (b.lo_rows > 1 ? i * P : 0),
                   b.hi + (b.hi_rows > 1 ? i * P : 0), b.freem, b.max_it, b.tol, b.eps,
                   b.out_state + i, b.out_chi2 + i, b.out_it + i);
#pragma unroll
    for (int k = 0; k < P; ++k) b.out_p[i * P + k] = p[k];
}

#define BATCH_ARGS                                                                    \
    const data_t *data, const real_t *weights, int has_w, const real_t *offsets,     \
        int has_off, int mle, long long n, int h, int w, const real_t *init,          \
        const real_t *lo, int lo_rows, const real_t *hi, int hi_rows, const int *freem, \
        int max_it, real_t tol, real_t eps
#define MAKE_BATCH                                                                    \
    Batch b = {data, has_w ? weights : 0, has_off ? offsets : 0, init, lo, hi, freem, \
               out_p, out_state, out_chi2, out_it, n, h, w, mle, lo_rows, hi_rows,    \
               max_it, tol, eps}
#define OUT_ARGS real_t *out_p, int *out_state, real_t *out_chi2, int *out_it

#ifndef STEMSCALE_HOST
// One thread per fit.  With use_shared the block first copies its windows into
// shared memory with coalesced loads (a window's pixels are contiguous in
// global memory, so per-thread reads would be strided by h * w).
template <int MODEL>
__device__ __forceinline__ void kernel_body(const Batch& b, int use_shared) {
    extern __shared__ unsigned char smem_raw[];
    data_t* sdata = reinterpret_cast<data_t*>(smem_raw);
    const long long M = (long long)b.h * b.w;
    const long long first = (long long)blockIdx.x * blockDim.x;
    const long long i = first + threadIdx.x;
    if (use_shared) {
        long long count = b.n - first;
        if (count > blockDim.x) count = blockDim.x;
        const long long total = count * M;
        for (long long t = threadIdx.x; t < total; t += blockDim.x)
            sdata[t] = b.data[first * M + t];
        __syncthreads();
    }
    if (i >= b.n) return;
    run_fit<MODEL>(i, use_shared ? sdata + threadIdx.x * M : b.data + i * M, b);
}

#define STEMSCALE_KERNEL(NAME, MODEL)                                            \
    extern "C" __global__ void NAME(BATCH_ARGS, int use_shared, OUT_ARGS) {      \
        MAKE_BATCH;                                                              \
        kernel_body<MODEL>(b, use_shared);                                       \
    }

STEMSCALE_KERNEL(lm_gauss2d, 0)
STEMSCALE_KERNEL(lm_gauss2d_elliptic, 1)
STEMSCALE_KERNEL(lm_gauss2d_rotated, 2)
#else
extern "C" void lm_host(int model, BATCH_ARGS, OUT_ARGS) {
    MAKE_BATCH;
    const long long M = (long long)h * w;
    for (long long i = 0; i < n; ++i) {
        if (model == 0) run_fit<0>(i, data + i * M, b);
        else if (model == 1) run_fit<1>(i, data + i * M, b);
        else run_fit<2>(i, data + i * M, b);
    }
}
#endif
"""
