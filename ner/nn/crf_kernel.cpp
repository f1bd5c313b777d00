// The linear-chain CRF's inference loops in C++: Viterbi and the forward-backward log scores, sentence by sentence.
//
// Built with lstm_kernel.cpp by ner/nn/kernels.py; registered as torch.ops.ner_crf.viterbi and
// torch.ops.ner_crf.forward_backward, called by ner/nn/crf_kernel.py. The numbers of ner.nn.crf.CRF, whose loops
// run one step of the whole batch per Python iteration: Viterbi with the same operations in the same order (equal
// paths, the first of equal maxima kept); the forward-backward in float64 as shifted log-space products floored
// at 1e-300 (sums taken in another order: within ~1e-15). A sentence only reads its own steps, so the values at
// its steps are those the batched loops compute through the padding; padding gets 0.
// Shapes: B sentences, T steps, K tags; lengths (B,) int64 in [1, T].

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <vector>

namespace {

using at::Tensor;

constexpr double kSumFloor = 1e-300;  // ner.nn.crf._SUM_FLOOR
constexpr int64_t kSentencesPerTask = 8;

void check_inputs(const Tensor& emissions, const Tensor& lengths, int64_t tags) {
  TORCH_CHECK(emissions.dim() == 3 && emissions.size(2) == tags && emissions.is_contiguous(),
              "emissions: expected contiguous (B, T, K)");
  TORCH_CHECK(lengths.scalar_type() == at::kLong && lengths.dim() == 1 && lengths.size(0) == emissions.size(0),
              "lengths: expected int64 (B,)");
  const auto* length = lengths.data_ptr<int64_t>();
  for (int64_t b = 0; b < lengths.size(0); ++b) {
    TORCH_CHECK(length[b] >= 1 && length[b] <= emissions.size(1), "lengths: expected values in [1, T]");
  }
}

// Best path of one sentence of `length` steps: em (length, K), scores start (K,), transitions (K, K), end (K,).
template <typename T>
void viterbi_sentence(const T* em, int64_t length, int64_t tags, const T* start, const T* transitions, const T* end,
                      int64_t* path, std::vector<int64_t>& history) {
  std::vector<T> score(start, start + tags), next(tags);
  for (int64_t j = 0; j < tags; ++j) score[j] = start[j] + em[j];
  for (int64_t t = 1; t < length; ++t) {
    for (int64_t j = 0; j < tags; ++j) {
      T best = score[0] + transitions[j];
      int64_t argbest = 0;
      for (int64_t i = 1; i < tags; ++i) {
        const T candidate = score[i] + transitions[i * tags + j];
        if (candidate > best) best = candidate, argbest = i;
      }
      next[j] = best + em[t * tags + j];
      history[(t - 1) * tags + j] = argbest;
    }
    score.swap(next);
  }
  int64_t tag = 0;
  T best = score[0] + end[0];
  for (int64_t j = 1; j < tags; ++j) {
    if (score[j] + end[j] > best) best = score[j] + end[j], tag = j;
  }
  path[length - 1] = tag;
  for (int64_t t = length - 2; t >= 0; --t) path[t] = tag = history[t * tags + tag];
}

// viterbi(emissions, lengths, start, transitions, end) -> (B, T) int64, 0 at padding; scores in the emissions'
// dtype (the caller promotes).
Tensor viterbi(const Tensor& emissions, const Tensor& lengths, const Tensor& start, const Tensor& transitions,
               const Tensor& end) {
  const int64_t batch = emissions.size(0), steps = emissions.size(1), tags = start.size(0);
  check_inputs(emissions, lengths, tags);
  Tensor path = at::zeros({batch, steps}, lengths.options());
  AT_DISPATCH_FLOATING_TYPES(emissions.scalar_type(), "crf_viterbi", [&] {
    const Tensor s = start.to(emissions.scalar_type()).contiguous();
    const Tensor tr = transitions.to(emissions.scalar_type()).contiguous();
    const Tensor e = end.to(emissions.scalar_type()).contiguous();
    const auto* em = emissions.data_ptr<scalar_t>();
    const auto* length = lengths.data_ptr<int64_t>();
    auto* out = path.data_ptr<int64_t>();
    at::parallel_for(0, batch, kSentencesPerTask, [&](int64_t begin, int64_t stop) {
      std::vector<int64_t> history(std::max<int64_t>(steps - 1, 1) * tags);
      for (int64_t b = begin; b < stop; ++b) {
        viterbi_sentence(em + b * steps * tags, length[b], tags, s.data_ptr<scalar_t>(), tr.data_ptr<scalar_t>(),
                         e.data_ptr<scalar_t>(), out + b * steps, history);
      }
    });
  });
  return path;
}

// out[k] = log(max(sum_j exp(v[j] - shift) m(j, k), floor)) + shift, shift = max_j v[j]; m(j, k) = matrix[j K + k]
// (or matrix[k K + j] with kTransposed): ner.nn.crf._log_matmul_exp of one row.
template <bool kTransposed>
void log_matmul_exp(const double* v, const double* matrix, int64_t tags, double* out, std::vector<double>& scratch) {
  const double shift = *std::max_element(v, v + tags);
  for (int64_t j = 0; j < tags; ++j) scratch[j] = std::exp(v[j] - shift);
  for (int64_t k = 0; k < tags; ++k) {
    double sum = 0.0;
    for (int64_t j = 0; j < tags; ++j) sum += scratch[j] * matrix[kTransposed ? k * tags + j : j * tags + k];
    out[k] = std::log(std::max(sum, kSumFloor)) + shift;
  }
}

// forward_backward(emissions float64, lengths, start, transitions, end float64) -> [log_alpha (B, T, K),
// log_beta (B, T, K), log_z (B,)]: CRF._forward_backward (emissions as it gets them, zero at padding).
std::vector<Tensor> forward_backward(const Tensor& emissions, const Tensor& lengths, const Tensor& start,
                                     const Tensor& transitions, const Tensor& end) {
  const int64_t batch = emissions.size(0), steps = emissions.size(1), tags = start.size(0);
  check_inputs(emissions, lengths, tags);
  TORCH_CHECK(emissions.scalar_type() == at::kDouble && start.scalar_type() == at::kDouble &&
                  transitions.scalar_type() == at::kDouble && end.scalar_type() == at::kDouble,
              "forward_backward: expected float64 emissions and scores");
  Tensor alpha = at::zeros_like(emissions), beta = at::zeros_like(emissions);
  Tensor log_z = at::empty({batch}, emissions.options());
  const Tensor exp_transitions = transitions.exp().contiguous();  // (K, K): disallowed entries are exactly 0
  const Tensor s = start.contiguous(), e = end.contiguous();
  const double* em = emissions.data_ptr<double>();
  const double *first = s.data_ptr<double>(), *last = e.data_ptr<double>(), *m = exp_transitions.data_ptr<double>();
  const auto* length = lengths.data_ptr<int64_t>();
  double *a = alpha.data_ptr<double>(), *be = beta.data_ptr<double>(), *z = log_z.data_ptr<double>();
  at::parallel_for(0, batch, kSentencesPerTask, [&](int64_t begin, int64_t stop) {
    std::vector<double> scratch(tags), row(tags);
    for (int64_t b = begin; b < stop; ++b) {
      const double* x = em + b * steps * tags;
      double *fa = a + b * steps * tags, *fb = be + b * steps * tags;
      const int64_t n = length[b];
      for (int64_t k = 0; k < tags; ++k) fa[k] = first[k] + x[k];
      for (int64_t t = 1; t < n; ++t) {
        log_matmul_exp<false>(fa + (t - 1) * tags, m, tags, fa + t * tags, scratch);
        for (int64_t k = 0; k < tags; ++k) fa[t * tags + k] += x[t * tags + k];
      }
      for (int64_t k = 0; k < tags; ++k) row[k] = fa[(n - 1) * tags + k] + last[k];
      const double shift = *std::max_element(row.begin(), row.end());
      double sum = 0.0;
      for (int64_t k = 0; k < tags; ++k) sum += std::exp(row[k] - shift);
      z[b] = std::log(sum) + shift;
      for (int64_t k = 0; k < tags; ++k) fb[(n - 1) * tags + k] = last[k];
      for (int64_t t = n - 2; t >= 0; --t) {
        for (int64_t k = 0; k < tags; ++k) row[k] = x[(t + 1) * tags + k] + fb[(t + 1) * tags + k];
        log_matmul_exp<true>(row.data(), m, tags, fb + t * tags, scratch);
      }
    }
  });
  return {alpha, beta, log_z};
}

}  // namespace

TORCH_LIBRARY(ner_crf, m) {
  m.def("viterbi(Tensor emissions, Tensor lengths, Tensor start, Tensor transitions, Tensor end) -> Tensor",
        &viterbi);
  m.def("forward_backward(Tensor emissions, Tensor lengths, Tensor start, Tensor transitions, Tensor end) -> "
        "Tensor[]",
        &forward_backward);
}
