/*
 * asr_consistency_decode: decodes WAV files, one utterance each and in order, with ONE
 * pocketsphinx decoder, fed 20 ms at a time as the server feeds it. Used
 * to find out what state a decoder carries from one utterance to the next
 * (docs/asr.md): decode A B A and compare the two A's.
 *
 *   asr_consistency_decode [-fresh] [-running N] [-prescan MS] [-batch] [-stream]
 *                          [-cut MS] [-ps -KEY VALUE]... FILE.wav...
 *
 * -fresh puts the cepstral mean back to its initial value before every
 * utterance; -running N (with -fresh) moves the mean, after every 20 ms,
 * to the mean of the utterance so far, the initial value counting as N
 * frames; -prescan MS starts each utterance from the cepstral mean of its
 * first MS ms (computed by a second front end), then decodes live; -batch decodes each file as one block (the cepstral mean of
 * the whole utterance); -cut MS leaves out the last MS ms of each file;
 * -stream starts a new stream before each utterance (the front end's noise
 * estimate starts again); -ps passes a decoder option (e.g. -ps -remove_noise no).
 * 16 kHz mono 16-bit WAV only (the header is skipped, not checked).
 *
 * cc -O2 -o asr_consistency_decode bench/asr_consistency_decode.c $(pkg-config --cflags --libs pocketsphinx) \
 *    -DMODELDIR=\"/usr/share/pocketsphinx/model\"
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pocketsphinx.h>
#include <sphinxbase/ckd_alloc.h>
#include <sphinxbase/err.h>
#include <sphinxbase/fe.h>
#include <sphinxbase/feat.h>

int main(int argc, char **argv) {
  const char *opts[64] = {"-hmm", MODELDIR "/en-us/en-us", "-lm", MODELDIR "/en-us/en-us.lm.bin",
                          "-dict", MODELDIR "/en-us/cmudict-en-us.dict"};
  int nopt = 6, fresh = 0, batch = 0, stream = 0, first = 1;
  long cut = 0, running = 0, scan = 0;
  for (; first < argc && argv[first][0] == '-'; first++) {
    if (strcmp(argv[first], "-fresh") == 0) fresh = 1;
    else if (strcmp(argv[first], "-batch") == 0) batch = 1;
    else if (strcmp(argv[first], "-stream") == 0) stream = 1;
    else if (strcmp(argv[first], "-prescan") == 0 && first + 1 < argc)
      scan = strtol(argv[++first], NULL, 10) * 16;
    else if (strcmp(argv[first], "-running") == 0 && first + 1 < argc)
      running = strtol(argv[++first], NULL, 10);
    else if (strcmp(argv[first], "-cut") == 0 && first + 1 < argc) cut = strtol(argv[++first], NULL, 10) * 16;
    else if (strcmp(argv[first], "-ps") == 0 && first + 2 < argc && nopt < 62) {
      opts[nopt++] = argv[++first];
      opts[nopt++] = argv[++first];
    } else {
      fprintf(stderr, "usage: asr_consistency_decode [-fresh] [-running N] [-prescan MS] [-batch] [-stream] "
                      "[-cut MS] [-ps -KEY VALUE]... FILE.wav...\n");
      return 2;
    }
  }
  err_set_logfp(NULL);
  cmd_ln_t *cfg = cmd_ln_parse_r(NULL, ps_args(), nopt, (char **)opts, TRUE);
  ps_decoder_t *ps = cfg ? ps_init(cfg) : NULL;
  if (!ps) return 1;
  cmn_t *cmn = ps_get_feat(ps)->cmn_struct;
  mfcc_t *mean0 = malloc((size_t)cmn->veclen * sizeof *mean0);
  memcpy(mean0, cmn->cmn_mean, (size_t)cmn->veclen * sizeof *mean0);
  for (int i = first; i < argc; i++) {
    FILE *f = fopen(argv[i], "rb");
    if (!f) {
      perror(argv[i]);
      continue;
    }
    if (fresh) {
      memcpy(cmn->cmn_mean, mean0, (size_t)cmn->veclen * sizeof *mean0);
      memset(cmn->sum, 0, (size_t)cmn->veclen * sizeof *cmn->sum);
      cmn->nframe = 0;
    }
    double c0 = cmn->cmn_mean[0];
    static int16_t pcm[16000 * 60];
    fseek(f, 44, SEEK_SET);
    long total = (long)fread(pcm, 2, sizeof pcm / 2, f);
    fclose(f);
    total = total > cut ? total - cut : 0;
    if (scan) {
      fe_t *fe = fe_init_auto_r(ps_get_config(ps));
      long n = total < scan ? total : scan;
      int32 nmax = (int32)(n / 160 + 4), nfr = nmax, last = 0;
      mfcc_t **cep = (mfcc_t **)ckd_calloc_2d((size_t)nmax + 1, (size_t)cmn->veclen, sizeof(mfcc_t));
      const int16 *p = pcm;
      size_t left = (size_t)n;
      fe_start_utt(fe);
      fe_process_frames(fe, &p, &left, cep, &nfr, NULL);
      fe_end_utt(fe, cep[nfr], &last);
      nfr += last;
      if (nfr > 0) {
        for (int k = 0; k < cmn->veclen; k++) {
          double sum = 0;
          for (int t = 0; t < nfr; t++) sum += cep[t][k];
          cmn->cmn_mean[k] = (mfcc_t)(sum / nfr);
          cmn->sum[k] = 0;
        }
        cmn->nframe = 0;
      }
      ckd_free_2d(cep);
      fe_free(fe);
      c0 = cmn->cmn_mean[0];
    }
    if (stream) ps_start_stream(ps);
    ps_start_utt(ps);
    if (batch) ps_process_raw(ps, pcm, (size_t)total, FALSE, TRUE);
    else
      for (long at = 0; at < total; at += 320) {
        ps_process_raw(ps, pcm + at, (size_t)(total - at < 320 ? total - at : 320), FALSE, FALSE);
        if (running && cmn->nframe > 0 && cmn->nframe < 800)
          for (int k = 0; k < cmn->veclen; k++)
            cmn->cmn_mean[k] = (mean0[k] * running + cmn->sum[k]) / (running + cmn->nframe);
      }
    ps_end_utt(ps);
    const char *hyp = ps_get_hyp(ps, NULL);
    printf("%s\tc0 %.2f\t%s\n", argv[i], c0, hyp ? hyp : "");
  }
  free(mean0);
  ps_free(ps);
  cmd_ln_free_r(cfg);
  return 0;
}
