// tingshuo call history.
//
// One page for two views, chosen by the path: /history lists the calls,
// /history/{id} shows one. Moving between them uses the History API, so the
// browser's back and forward buttons and reloads land on the same view; the
// list's filters live in the query string for the same reason.
//
// Everything shown comes from the history API (docs/api.md). Its text is
// the callers' own words and the AI's, so it is only ever put on the page
// as text (textContent, createTextNode), never parsed as HTML. A 401 from
// any request means the server wants the admin token: the page shows a
// login form and, once the server has set its session cookie, shows again
// what was asked for.
//
// The latency waterfall of each turn is an inline SVG drawn here, at the
// pixel width it gets, so its text stays readable on a phone; it is drawn
// again when that width changes.
'use strict';

// --- text in two languages ---------------------------------------------------

const TEXT = {
  en: {
    skip: 'Skip to content', history: 'Call history', newCall: 'New call', logout: 'Sign out',
    switchTo: '中文', switchLabel: '切换到中文', siteNav: 'Site',
    loginTitle: 'Sign in to see call history',
    loginNote: 'Conversations are private. Enter the admin token configured on the server.',
    token: 'Admin token', signIn: 'Sign in', signingIn: 'Signing in…',
    badToken: 'That token was not accepted.', needToken: 'Enter the token.',
    loginFailed: 'Could not sign in: {message}',
    filters: 'Search and filter calls', search: 'Search', searchHint: 'Words said by the caller or the AI',
    from: 'From', to: 'To', endReason: 'End reason', anyReason: 'Any', clear: 'Clear filters',
    colWhen: 'When', colDuration: 'Duration', colReason: 'Ended', colTurns: 'Turns',
    colPreview: 'Conversation', colCost: 'Cost', callsLabel: 'Calls, newest first',
    shown: '{n} calls', shownOne: '1 call', latest: 'The latest {n} calls', loading: 'Loading…', loadMore: 'Load more', retry: 'Try again',
    noCalls: 'No calls yet', noCallsText: 'Calls appear here once they have started.', makeCall: 'Make a call',
    noMatch: 'No calls match', noMatchText: 'Try other words or a wider time range.',
    listError: 'The calls could not be loaded', callError: 'The call could not be loaded',
    netError: 'The server did not answer. Check that it is running.',
    httpError: 'The server answered {status}{message}.',
    notFound: 'No such call', notFoundText: 'It may have been deleted.',
    noWords: 'Nothing was said', recorded: 'Recorded', turnsN: '{n} turns', turns1: '1 turn',
    allCalls: 'All calls', callId: 'Call', delete: 'Delete', deleting: 'Deleting…',
    confirmTitle: 'Delete this call?',
    confirmText: 'Its transcript, latency figures and recording are removed for good.',
    cancel: 'Cancel', deleted: 'The call was deleted.', deleteFailed: 'The call could not be deleted: {message}',
    callOn: 'Call on {when}',
    f_when: 'Started', f_connected: 'Connected', f_connectedAfter: 'after {after}', f_notConnected: 'never',
    f_duration: 'Duration', f_agent: 'Agent', f_engines: 'Engines', f_language: 'Language',
    f_caller: 'Caller', f_ua: 'Browser', f_packets: 'Packets', f_node: 'Server', f_settings: 'Call settings',
    f_cost: 'Estimated cost', f_usage: 'Usage', notPriced: 'not priced', costUnknown: 'unknown',
    costHint: 'Estimated at the prices configured when the call ended',
    notPricedHint: 'No price_* keys were set when the call ended',
    costLostHint: 'The server stopped during the call: its cost was never worked out',
    u_in: '{n} in', u_cached: '{n} cached', u_written: '{n} written to cache', u_out: '{n} out',
    u_chars: '{n} chars', u_charsCached: '{n} from cache', u_audio: '{s} s of audio',
    ttsCached: 'cached audio', ttsCachedHint: 'The first sentence was played from the TTS cache',
    packets: '{received} received · {lost} lost ({pct})', voice: 'voice', echo: 'echo',
    recordingTitle: 'Recording', noRecording: 'This call was not recorded.',
    download: 'Download', recFormat: 'Ogg Opus, {size}', recBroken: 'The recording could not be played.',
    recPlayer: 'Recording of the call',
    conversation: 'Conversation', legend: 'Latency chart legend', noTurns: 'Nothing was said in this call.',
    caller: 'Caller', ai: 'AI', interrupted: 'interrupted', engineError: 'Engine error: {error}',
    turnN: 'Turn {n}',
    tool: 'Tool', toolFailed: 'failed', toolNoResult: 'no result', toolCut: 'cut to 4 KB in the record',
    toolsN: '{n} tool calls', tools1: '1 tool call', f_tools: 'Tool calls',
    toolsMore: '{n} more tool calls were made in this turn but not kept in the record',
    l_v2v: 'Voice to voice', l_endpoint: 'Endpoint', l_asr: 'ASR', l_llm: 'LLM 1st sentence',
    l_tts: 'TTS 1st audio', l_other: 'Other', s_v2v: 'Total', s_llm: 'LLM', s_tts: 'TTS', l_token: 'LLM 1st token', l_barge: 'Barge-in stop',
    l_early: 'Reply made in the pause, before the turn ended',
    otherHint: 'The rest of voice to voice: time the server itself added',
    chartLabel: 'Latency of turn {n}: {parts}', ms: 'ms',
    today: 'Today', yesterday: 'Yesterday', inProgress: 'In progress',
    r_hangup: 'Hung up', r_goodbye: 'AI said goodbye', r_idle: 'Caller silent',
    'r_ice timeout': 'Network lost', 'r_dtls failed': 'Secure link failed',
    'r_dtls timeout': 'Secure link timed out', 'r_fingerprint mismatch': 'Fingerprint mismatch',
    'r_ICE restart failed': 'Network change failed', 'r_resume timeout': 'Page did not return',
    'r_internal error': 'Server error', 'r_out of memory': 'Server out of memory',
    'r_server shutting down': 'Server shut down', 'r_server stopped': 'Server stopped',
  },
  zh: {
    skip: '跳到内容', history: '通话记录', newCall: '新通话', logout: '退出登录',
    switchTo: 'English', switchLabel: 'Switch to English', siteNav: '站点',
    loginTitle: '登录后查看通话记录',
    loginNote: '通话内容是私密的。请输入服务器上配置的管理令牌。',
    token: '管理令牌', signIn: '登录', signingIn: '正在登录…',
    badToken: '令牌不正确。', needToken: '请输入令牌。',
    loginFailed: '无法登录：{message}',
    filters: '搜索和筛选通话', search: '搜索', searchHint: '来电者或 AI 说过的话',
    from: '开始日期', to: '结束日期', endReason: '结束原因', anyReason: '全部', clear: '清除筛选',
    colWhen: '时间', colDuration: '时长', colReason: '结束', colTurns: '轮次',
    colPreview: '对话', colCost: '费用', callsLabel: '通话列表，最新的在前',
    shown: '{n} 通通话', shownOne: '1 通通话', latest: '最近的 {n} 通通话', loading: '正在加载…', loadMore: '加载更多', retry: '重试',
    noCalls: '还没有通话', noCallsText: '通话开始后会出现在这里。', makeCall: '发起通话',
    noMatch: '没有符合条件的通话', noMatchText: '换个关键词，或放宽时间范围试试。',
    listError: '无法加载通话列表', callError: '无法加载这通通话',
    netError: '服务器没有响应，请确认它在运行。',
    httpError: '服务器返回 {status}{message}。',
    notFound: '找不到这通通话', notFoundText: '它可能已被删除。',
    noWords: '没有对话', recorded: '有录音', turnsN: '{n} 轮', turns1: '1 轮',
    allCalls: '全部通话', callId: '通话', delete: '删除', deleting: '正在删除…',
    confirmTitle: '删除这通通话？',
    confirmText: '它的文字记录、延迟数据和录音将被永久删除。',
    cancel: '取消', deleted: '通话已删除。', deleteFailed: '无法删除通话：{message}',
    callOn: '{when} 的通话',
    f_when: '开始', f_connected: '接通', f_connectedAfter: '{after}后', f_notConnected: '未接通',
    f_duration: '时长', f_agent: '代理', f_engines: '引擎', f_language: '语言',
    f_caller: '来电地址', f_ua: '浏览器', f_packets: '数据包', f_node: '服务器', f_settings: '通话设置',
    f_cost: '估算费用', f_usage: '用量', notPriced: '未定价', costUnknown: '未知',
    costHint: '按通话结束时配置的价格估算',
    notPricedHint: '通话结束时没有设置 price_* 价格',
    costLostHint: '通话期间服务器中止，未能计算费用',
    u_in: '输入 {n}', u_cached: '缓存读取 {n}', u_written: '写入缓存 {n}', u_out: '输出 {n}',
    u_chars: '{n} 字', u_charsCached: '缓存 {n} 字', u_audio: '{s} 秒音频',
    ttsCached: '缓存语音', ttsCachedHint: '首句语音来自 TTS 缓存',
    packets: '收到 {received} · 丢失 {lost}（{pct}）', voice: '语音', echo: '回声',
    recordingTitle: '录音', noRecording: '这通通话没有录音。',
    download: '下载', recFormat: 'Ogg Opus，{size}', recBroken: '录音无法播放。',
    recPlayer: '通话录音',
    conversation: '对话', legend: '延迟图例', noTurns: '这通通话里没有人说话。',
    caller: '来电者', ai: 'AI', interrupted: '已打断', engineError: '引擎错误：{error}',
    turnN: '第 {n} 轮',
    tool: '工具', toolFailed: '失败', toolNoResult: '无结果', toolCut: '记录中截断为 4 KB',
    toolsN: '{n} 次工具调用', tools1: '1 次工具调用', f_tools: '工具调用',
    toolsMore: '本轮另有 {n} 次工具调用未保存在记录中',
    l_v2v: '语音到语音', l_endpoint: '断句', l_asr: '语音识别', l_llm: 'LLM 首句',
    l_tts: 'TTS 首音', l_other: '其他', s_v2v: '总计', s_llm: 'LLM', s_tts: 'TTS', l_token: 'LLM 首字', l_barge: '打断停止',
    l_early: '回复在停顿中已准备好，轮次结束即播放',
    otherHint: '语音到语音中剩下的部分：服务器自身增加的时间',
    chartLabel: '第 {n} 轮的延迟：{parts}', ms: '毫秒',
    today: '今天', yesterday: '昨天', inProgress: '进行中',
    r_hangup: '挂断', r_goodbye: 'AI 结束对话', r_idle: '来电者无声',
    'r_ice timeout': '网络中断', 'r_dtls failed': '安全连接失败',
    'r_dtls timeout': '安全连接超时', 'r_fingerprint mismatch': '证书指纹不符',
    'r_ICE restart failed': '网络切换失败', 'r_resume timeout': '页面未返回',
    'r_internal error': '服务器错误', 'r_out of memory': '服务器内存不足',
    'r_server shutting down': '服务器关闭', 'r_server stopped': '服务器中止',
  },
};

// End reasons (docs/protocol.md), with the colour their badge gets.
const REASONS = [
  ['hangup', 'ok'], ['goodbye', 'ok'], ['idle', 'muted'], ['ice timeout', 'bad'],
  ['dtls failed', 'bad'], ['dtls timeout', 'bad'], ['fingerprint mismatch', 'bad'],
  ['ICE restart failed', 'bad'], ['resume timeout', 'bad'], ['internal error', 'bad'],
  ['out of memory', 'bad'], ['server shutting down', 'warn'], ['server stopped', 'warn'],
];
const REASON_KIND = new Map(REASONS);

// localStorage can be missing or refuse (private windows, quotas).
const store = {
  get(k) { try { return localStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { localStorage.setItem(k, v); } catch { /* lasts this visit only */ } },
};
const session = {
  get(k) { try { return sessionStorage.getItem(k); } catch { return null; } },
  set(k, v) { try { if (v) sessionStorage.setItem(k, v); else sessionStorage.removeItem(k); } catch { /* as above */ } },
};

function pickLang() {
  const saved = store.get('tingshuo.lang');
  if (saved === 'en' || saved === 'zh') return saved;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

// Keys can come from the server (an agent's name, an end reason): only own entries count.
const hasText = (key, lang = 'en') => Object.prototype.hasOwnProperty.call(TEXT[lang], key);

function t(key, params = {}) {
  const s = hasText(key, state.lang) ? TEXT[state.lang][key] : hasText(key) ? TEXT.en[key] : String(key);
  return s.replace(/\{(\w+)\}/g, (_, k) => String(params[k] ?? ''));
}

// --- elements and state --------------------------------------------------------

const $ = (id) => document.getElementById(id);
const ui = {
  main: $('main'), toast: $('toast'), lang: $('lang'), logout: $('logout'),
  loginView: $('login-view'), loginForm: $('login-form'), loginToken: $('login-token'), loginError: $('login-error'),
  listView: $('list-view'), listTitle: $('list-title'), listCount: $('list-count'), filters: $('filters'),
  q: $('f-q'), from: $('f-from'), to: $('f-to'), reason: $('f-reason'), clear: $('f-clear'),
  calls: $('calls'), listState: $('list-state'), listLoading: $('list-loading'), more: $('more'),
  callView: $('call-view'), callLoading: $('call-loading'), callState: $('call-state'), call: $('call'),
  callTitle: $('call-title'), callId: $('call-id'), callReason: $('call-reason'), del: $('delete'),
  facts: $('facts'), recBody: $('rec-body'), turns: $('turns'), legend: $('wf-legend'), confirm: $('confirm'),
};

const PAGE = 25;
const state = {
  lang: 'en',
  view: null,          // 'list' | 'call' | 'login'
  // The list as loaded, kept while the reader looks at a call so going back
  // shows it at once, where they left it.
  list: { key: null, calls: [], cursor: null, done: false, loadedAt: 0, seq: 0, scrollY: 0, error: null },
  call: { id: null, data: null, seq: 0, error: null },
  toastTimer: 0,
  chartWidth: 0,
  listUrl: '/history', // the list as last shown, filters and all
};

// --- the API -------------------------------------------------------------------

class AuthError extends Error {}
class HttpError extends Error {
  constructor(status, message) { super(message); this.status = status; }
}

// Returns the parsed JSON body (or null); throws AuthError on 401, HttpError
// on any other failure status, TypeError when the server is unreachable.
async function api(path, { method = 'GET', body } = {}) {
  // The server refuses a POST or DELETE without this page's Origin (CSRF), and
  // under a no-referrer policy browsers send "Origin: null": same-origin sends it.
  const opts = { method, credentials: 'same-origin', referrerPolicy: 'same-origin',
    headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  const res = await fetch(path, opts);
  const text = await res.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (res.status === 401) throw new AuthError('unauthorized');
  if (!res.ok) throw new HttpError(res.status, errorMessage(data));
  return data;
}

function errorMessage(data) {
  if (!data || typeof data !== 'object') return '';
  const e = data.error;
  if (e && typeof e === 'object' && typeof e.message === 'string') return e.message;
  if (typeof e === 'string') return e;
  return typeof data.message === 'string' ? data.message : '';
}

function describeError(err) {
  if (err instanceof HttpError) return t('httpError', { status: err.status, message: err.message ? `: ${err.message}` : '' });
  return t('netError');
}

// --- small helpers ---------------------------------------------------------------

const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = String(text);
  return e;
};
const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const str = (v) => (typeof v === 'string' && v !== '' ? v : null);
const locale = () => (state.lang === 'zh' ? 'zh-CN' : 'en');
const fmtInt = (n) => new Intl.NumberFormat(locale()).format(n);

function parseTime(v) {
  if (typeof v !== 'string') return null;
  const d = new Date(v);
  return Number.isNaN(d.getTime()) ? null : d;
}

const sameDay = (a, b) => a.getFullYear() === b.getFullYear() && a.getMonth() === b.getMonth() && a.getDate() === b.getDate();

// "Today 15:06", "Nov 29, 15:06", "Nov 29, 2025, 15:06".
function fmtWhen(d) {
  if (!d) return '–';
  const now = new Date(), yest = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1);
  const time = d.toLocaleTimeString(locale(), { hour: 'numeric', minute: '2-digit' });
  if (sameDay(d, now)) return `${t('today')} ${time}`;
  if (sameDay(d, yest)) return `${t('yesterday')} ${time}`;
  const opts = { month: 'short', day: 'numeric' };
  if (d.getFullYear() !== now.getFullYear()) opts.year = 'numeric';
  return `${d.toLocaleDateString(locale(), opts)} ${time}`;
}

function fmtFull(d) {
  if (!d) return '–';
  return d.toLocaleString(locale(), { weekday: 'short', year: 'numeric', month: 'short', day: 'numeric',
    hour: 'numeric', minute: '2-digit', second: '2-digit' });
}

function fmtDuration(s) {
  s = num(s);
  if (s === null || s < 0) return '–';
  const total = Math.round(s), h = Math.floor(total / 3600), m = Math.floor((total % 3600) / 60), sec = total % 60;
  const mmss = `${h ? String(m).padStart(2, '0') : m}:${String(sec).padStart(2, '0')}`;
  return h ? `${h}:${mmss}` : mmss;
}

function fmtBytes(n) {
  n = num(n);
  if (n === null) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}

// "$0.0044", "¥1.25", "0.5 credits": small amounts keep two significant digits.
function fmtCost(v, currency) {
  v = num(v);
  if (v === null || v < 0) return null;
  const opts = v === 0 || v >= 1 ? { minimumFractionDigits: 2, maximumFractionDigits: 2 }
    : v >= 0.01 ? { minimumFractionDigits: 2, maximumFractionDigits: 3 } : { maximumSignificantDigits: 2 };
  const cur = str(currency);
  try {
    if (cur) return new Intl.NumberFormat(locale(), { ...opts, style: 'currency', currency: cur }).format(v);
  } catch { /* not an ISO 4217 code: the number and the name as configured */ }
  const n = new Intl.NumberFormat(locale(), opts).format(v);
  return cur ? `${n} ${cur}` : n;
}

// Why an ended call has no cost: not priced, or ended by a crash before it was worked out.
const costMissing = (c) => (c.end_reason === 'server stopped' ? 'costLostHint' : 'notPricedHint');

// What a call or a turn used, as chips: "LLM 1,200 in · 1,024 cached · 9 out", "TTS 11 chars",
// "ASR 2.5 s of audio". Nothing for a service that was not used; [] for no usage at all.
function usageChips(u) {
  if (!u || typeof u !== 'object') return [];
  const n = (k) => num(u[k]) ?? 0;
  const chip = (kind, parts) => {
    const c = el('span', 'engine usage');
    c.append(el('span', 'kind', kind), document.createTextNode(parts.join(' · ')));
    return c;
  };
  const out = [];
  const inTok = n('llm_input_tokens'), outTok = n('llm_output_tokens');
  if (inTok || outTok) {
    const parts = [t('u_in', { n: fmtInt(inTok) })];
    if (n('llm_cached_tokens')) parts.push(t('u_cached', { n: fmtInt(n('llm_cached_tokens')) }));
    if (n('llm_cache_write_tokens')) parts.push(t('u_written', { n: fmtInt(n('llm_cache_write_tokens')) }));
    parts.push(t('u_out', { n: fmtInt(outTok) }));
    out.push(chip('LLM', parts));
  }
  if (n('tts_chars') || n('tts_chars_cached')) {
    const parts = [t('u_chars', { n: fmtInt(n('tts_chars')) })];
    if (n('tts_chars_cached')) parts.push(t('u_charsCached', { n: fmtInt(n('tts_chars_cached')) }));
    out.push(chip('TTS', parts));
  }
  if (n('asr_seconds') > 0) {
    const s = new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(n('asr_seconds'));
    out.push(chip('ASR', [t('u_audio', { s })]));
  }
  return out;
}

const agentName = (a) => (a === 'voice' || a === 'echo' ? t(a) : a);

function reasonBadge(reason, ended) {
  const b = el('span', 'badge');
  if (!ended && !reason) {
    b.dataset.kind = 'live';
    b.textContent = t('inProgress');
  } else {
    b.dataset.kind = REASON_KIND.get(reason) || 'muted';
    b.textContent = reason ? (hasText(`r_${reason}`) ? t(`r_${reason}`) : reason) : '–';
  }
  return b;
}

const ICONS = {
  rec: 'M12 3a3 3 0 0 1 3 3v6a3 3 0 0 1-6 0V6a3 3 0 0 1 3-3zM5 11a7 7 0 0 0 14 0M12 18v3',
  chevron: 'M9 5l7 7-7 7',
  warn: 'M12 4l9 16H3zM12 10v4M12 17v.5',
};
function icon(name, cls = 'icon') {
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('class', cls);
  svg.setAttribute('aria-hidden', 'true');
  const p = document.createElementNS(NS, 'path');
  p.setAttribute('d', ICONS[name]);
  svg.append(p);
  return svg;
}

function showToast(text) {
  ui.toast.textContent = text;
  ui.toast.hidden = false;
  clearTimeout(state.toastTimer);
  state.toastTimer = setTimeout(() => { ui.toast.hidden = true; }, 6000);
}

// --- routing ------------------------------------------------------------------------

function route() {
  const m = /^\/history\/([^/]+)\/?$/.exec(location.pathname);
  if (m) {
    let id = null;
    try { id = decodeURIComponent(m[1]); } catch { id = null; }
    if (id) return { view: 'call', id };
  }
  return { view: 'list' };
}

// A call opened from the list remembers it (fromList), so its "All calls"
// link can go back rather than pile up entries.
function navigate(url, { replace = false } = {}) {
  const fromList = state.view === 'list';
  if (fromList) state.list.scrollY = window.scrollY;
  if (replace) history.replaceState(null, '', url);
  else history.pushState({ fromList }, '', url);
  render();
}

function render() {
  const r = route();
  if (r.view === 'call') showCall(r.id);
  else showList();
}

function showView(name) {
  state.view = name;
  ui.loginView.hidden = name !== 'login';
  ui.listView.hidden = name !== 'list';
  ui.callView.hidden = name !== 'call';
}

// Ordinary left clicks on links inside the page stay in the page.
function onLinkClick(ev) {
  const a = ev.target.closest('a[data-nav]');
  if (!a || ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin) return;
  ev.preventDefault();
  // Back to the list from a call keeps the filters the reader had.
  const toList = url.pathname === '/history' && !url.search;
  if (toList && state.view === 'call' && history.state && history.state.fromList) { history.back(); return; }
  const target = toList ? state.listUrl : url.pathname + url.search;
  if (target !== location.pathname + location.search) navigate(target);
  else render();
}

// --- login ----------------------------------------------------------------------------

function showLogin() {
  session.set('tingshuo.signedIn', '');
  ui.logout.hidden = true;
  showView('login');
  document.title = `${t('loginTitle')} · tingshuo`;
  ui.loginError.textContent = '';
  ui.loginToken.removeAttribute('aria-invalid');
  ui.loginToken.focus();
}

async function onLogin(ev) {
  ev.preventDefault();
  const token = ui.loginToken.value.trim();
  if (!token) {
    ui.loginError.textContent = t('needToken');
    ui.loginToken.setAttribute('aria-invalid', 'true');
    ui.loginToken.focus();
    return;
  }
  const button = ui.loginForm.querySelector('button[type="submit"]');
  button.disabled = true;
  button.textContent = t('signingIn');
  try {
    await api('/api/login', { method: 'POST', body: { token } });
    ui.loginToken.value = '';
    session.set('tingshuo.signedIn', '1');
    ui.logout.hidden = false;
    state.list.key = null; // load afresh
    render();
  } catch (err) {
    ui.loginError.textContent = err instanceof AuthError ? t('badToken') : t('loginFailed', { message: describeError(err) });
    ui.loginToken.setAttribute('aria-invalid', 'true');
    ui.loginToken.select();
  } finally {
    button.disabled = false;
    button.textContent = t('signIn');
  }
}

async function onLogout() {
  try { await api('/api/logout', { method: 'POST' }); } catch { /* signed out either way */ }
  state.list = { ...state.list, key: null, calls: [] };
  state.call = { ...state.call, id: null, data: null };
  showLogin();
}

// --- the list -------------------------------------------------------------------------

// The filters as they are in the URL (?q=&from=YYYY-MM-DD&to=YYYY-MM-DD&reason=).
function readQuery() {
  const p = new URLSearchParams(location.search);
  const date = (v) => (/^\d{4}-\d{2}-\d{2}$/.test(v || '') ? v : '');
  const reason = p.get('reason') || '';
  return { q: (p.get('q') || '').slice(0, 200), from: date(p.get('from')), to: date(p.get('to')),
    reason: REASON_KIND.has(reason) ? reason : '' };
}

function listUrl(q = readQuery()) {
  const p = new URLSearchParams();
  for (const k of ['q', 'from', 'to', 'reason']) if (q[k]) p.set(k, q[k]);
  const s = p.toString();
  return s ? `/history?${s}` : '/history';
}

// A date picked in the filters is a day in the reader's time zone; the API
// takes instants. `to` covers its whole day.
function dayStart(ymd, plusDays = 0) {
  const [y, m, d] = ymd.split('-').map(Number);
  return new Date(y, m - 1, d + plusDays).toISOString();
}

function apiListPath(q, cursor) {
  const p = new URLSearchParams({ limit: String(PAGE) });
  if (q.q.trim()) p.set('q', q.q.trim());
  if (q.from) p.set('from', dayStart(q.from));
  if (q.to) p.set('to', dayStart(q.to, 1));
  if (q.reason) p.set('reason', q.reason);
  if (cursor) p.set('cursor', cursor);
  return `/api/calls?${p}`;
}

function fillFilters(q) {
  if (document.activeElement !== ui.q) ui.q.value = q.q;
  ui.from.value = q.from;
  ui.to.value = q.to;
  ui.reason.value = q.reason;
  ui.from.max = q.to || '';
  ui.to.min = q.from || '';
  ui.clear.hidden = !(q.q || q.from || q.to || q.reason);
}

function showList() {
  showView('list');
  document.title = `${t('history')} · tingshuo`;
  const q = readQuery(), key = JSON.stringify(q);
  state.listUrl = listUrl(q);
  fillFilters(q);
  const fresh = state.list.key === key && !state.list.error && Date.now() - state.list.loadedAt < 60000;
  if (fresh) {
    renderList();
    requestAnimationFrame(() => window.scrollTo(0, state.list.scrollY));
  } else {
    window.scrollTo(0, 0);
    loadList(q, false);
  }
}

async function loadList(q, more) {
  const L = state.list, seq = ++L.seq, key = JSON.stringify(q);
  if (!more) Object.assign(L, { key, calls: [], cursor: null, done: false, error: null });
  L.loading = true;
  renderList();
  try {
    const data = await api(apiListPath(q, more ? L.cursor : null));
    if (seq !== L.seq) return;
    const calls = data && Array.isArray(data.calls) ? data.calls.filter((c) => c && typeof c.id === 'string') : [];
    L.calls.push(...calls);
    L.cursor = data && typeof data.next_cursor === 'string' && data.next_cursor ? data.next_cursor : null;
    L.done = !L.cursor;
    L.loadedAt = Date.now();
  } catch (err) {
    if (seq !== L.seq) return;
    if (err instanceof AuthError) { L.loading = false; showLogin(); return; }
    L.error = err;
  }
  L.loading = false;
  if (state.view === 'list') renderList();
}

function renderList() {
  const L = state.list, q = readQuery();
  const filtered = !!(q.q || q.from || q.to || q.reason);
  ui.calls.replaceChildren(...L.calls.map(callRow));
  ui.listLoading.hidden = !(L.loading && !L.calls.length);
  ui.more.hidden = L.done || !L.calls.length || !!L.error;
  ui.more.disabled = !!L.loading;
  ui.more.textContent = L.loading ? t('loading') : t('loadMore');
  let count = '';
  if (L.calls.length && !L.loading) {
    if (!L.done) count = t('latest', { n: fmtInt(L.calls.length) });
    else count = L.calls.length === 1 ? t('shownOne') : t('shown', { n: fmtInt(L.calls.length) });
  }
  ui.listCount.textContent = count;
  ui.listView.querySelector('.calls-head').hidden = !L.calls.length;

  const box = ui.listState, retry = $('list-retry');
  box.querySelector('a')?.remove();
  if (L.error) {
    setState(box, 'error', t('listError'), describeError(L.error));
    retry.hidden = false;
  } else if (!L.loading && !L.calls.length) {
    setState(box, 'empty', filtered ? t('noMatch') : t('noCalls'), filtered ? t('noMatchText') : t('noCallsText'));
    retry.hidden = true;
    if (!filtered) {
      const a = el('a', 'btn primary small', t('makeCall'));
      a.href = '/';
      box.append(a);
    }
  } else {
    box.hidden = true;
  }
}

function setState(box, kind, title, text) {
  box.hidden = false;
  box.dataset.kind = kind;
  box.querySelector('.state-title').textContent = title;
  box.querySelector('.state-text').textContent = text;
}

function callRow(c) {
  const li = el('li');
  const a = el('a', 'row');
  a.href = `/history/${encodeURIComponent(c.id)}`;
  a.dataset.nav = '';
  a.dataset.id = c.id;

  const created = parseTime(c.created_at);
  const when = el('span', 'c-when');
  const time = el('time', null, fmtWhen(created));
  if (created) { time.dateTime = created.toISOString(); time.title = fmtFull(created); }
  when.append(time);

  const dur = el('span', 'c-dur');
  dur.append(el('span', 'sr', `${t('colDuration')}: `), document.createTextNode(fmtDuration(c.duration_s)));

  const reason = el('span', 'c-reason');
  reason.append(reasonBadge(str(c.end_reason), !!c.ended_at));

  const turns = el('span', 'c-turns');
  const n = num(c.turns) ?? 0;
  turns.textContent = n === 1 ? t('turns1') : t('turnsN', { n: fmtInt(n) });

  const cost = el('span', 'c-cost');
  const price = fmtCost(c.cost, c.currency);
  cost.append(el('span', 'sr', `${t('colCost')}: `), document.createTextNode(price ?? '–'));
  cost.title = price ? t('costHint') : c.ended_at ? t(costMissing(c)) : '';

  const preview = el('span', 'c-preview');
  const agent = str(c.agent);
  if (agent && agent !== 'voice') preview.append(el('span', 'tag agent', agentName(agent)));
  const tools = num(c.tool_calls) ?? 0;
  if (tools > 0) {
    const label = tools === 1 ? t('tools1') : t('toolsN', { n: fmtInt(tools) });
    const tag = el('span', 'tag tools');
    tag.title = label;
    tag.append(el('span', 'n', fmtInt(tools)), el('span', 'sr', ` ${label}`));
    preview.append(tag);
  }
  const words = str(c.preview);
  preview.append(el('span', words ? 'ptext' : 'ptext none', words || t('noWords')));

  const rec = el('span', 'c-rec');
  if (c.recording === true) {
    const i = icon('rec');
    rec.append(i, el('span', 'sr', t('recorded')));
    rec.title = t('recorded');
  }
  a.append(when, dur, reason, turns, cost, preview, rec, icon('chevron', 'icon go'));
  li.append(a);
  return li;
}

// Typing searches once the reader pauses; dates and the reason at once.
let searchTimer = 0;
function onFilterInput(ev) {
  clearTimeout(searchTimer);
  if (ev.target === ui.q && ev.type === 'input') searchTimer = setTimeout(applyFilters, 350);
  else applyFilters();
}

function applyFilters() {
  clearTimeout(searchTimer);
  const q = { q: ui.q.value.slice(0, 200), from: ui.from.value, to: ui.to.value, reason: ui.reason.value };
  const url = listUrl(q);
  if (url === location.pathname + location.search && state.list.key === JSON.stringify(readQuery())) return;
  history.replaceState(null, '', url);
  state.listUrl = url;
  const now = readQuery();
  fillFilters(now);
  loadList(now, false);
}

function clearFilters() {
  ui.q.value = '';
  ui.from.value = '';
  ui.to.value = '';
  ui.reason.value = '';
  applyFilters();
  ui.q.focus();
}

// --- one call ------------------------------------------------------------------------

async function showCall(id) {
  showView('call');
  window.scrollTo(0, 0);
  const C = state.call;
  if (C.id === id && C.data) { renderCall(); return; }
  const seq = ++C.seq;
  Object.assign(C, { id, data: null, error: null });
  ui.call.hidden = true;
  ui.callState.hidden = true;
  ui.callLoading.hidden = false;
  document.title = `${t('history')} · tingshuo`;
  try {
    const data = await api(`/api/calls/${encodeURIComponent(id)}`);
    if (seq !== C.seq) return;
    if (!data || typeof data.call !== 'object' || !data.call) throw new HttpError(500, 'bad answer');
    C.data = data.call;
  } catch (err) {
    if (seq !== C.seq) return;
    ui.callLoading.hidden = true;
    if (err instanceof AuthError) { showLogin(); return; }
    C.error = err;
  }
  ui.callLoading.hidden = true;
  if (state.view === 'call') {
    renderCall();
    ui.callTitle.focus({ preventScroll: true });
  }
}

function renderCall() {
  const C = state.call, retry = $('call-retry');
  if (C.error) {
    ui.call.hidden = true;
    const missing = C.error instanceof HttpError && C.error.status === 404;
    setState(ui.callState, missing ? 'empty' : 'error', missing ? t('notFound') : t('callError'),
      missing ? t('notFoundText') : describeError(C.error));
    retry.hidden = missing;
    return;
  }
  if (!C.data) return;
  const c = C.data;
  ui.callState.hidden = true;
  ui.call.hidden = false;
  const created = parseTime(c.created_at);
  ui.callTitle.textContent = fmtWhen(created);
  document.title = `${t('callOn', { when: ui.callTitle.textContent })} · tingshuo`;
  ui.callId.textContent = String(c.id);
  ui.callReason.replaceChildren(reasonBadge(str(c.end_reason), !!c.ended_at));
  renderFacts(c);
  renderRecording(c);
  renderLegend();
  renderTurns(c);
}

function fact(label, ...values) {
  const wrap = el('div', 'fact');
  const dd = el('dd');
  for (const v of values) dd.append(typeof v === 'string' ? document.createTextNode(v) : v);
  wrap.append(el('dt', null, label), dd);
  return wrap;
}

function renderFacts(c) {
  const created = parseTime(c.created_at), connected = parseTime(c.connected_at);
  const rows = [];
  const when = el('time', null, fmtFull(created));
  if (created) when.dateTime = created.toISOString();
  rows.push(fact(t('f_when'), when));
  rows.push(fact(t('f_connected'), connected && created
    ? t('f_connectedAfter', { after: fmtSeconds(connected - created) }) : t('f_notConnected')));
  rows.push(fact(t('f_duration'), fmtDuration(c.duration_s)));
  const agent = str(c.agent);
  if (agent) rows.push(fact(t('f_agent'), agentName(agent)));
  const engines = enginesText(c.engines);
  if (engines.length) rows.push(fact(t('f_engines'), ...engines));
  if (str(c.language)) rows.push(fact(t('f_language'), c.language));
  if (str(c.remote_addr)) rows.push(fact(t('f_caller'), el('code', null, c.remote_addr)));
  const rx = num(c.packets_received), lost = num(c.packets_lost);
  if (rx !== null || lost !== null) {
    const total = (rx ?? 0) + (lost ?? 0);
    const share = total ? (lost ?? 0) * 100 / total : 0;
    const pct = !total ? '–' : `${share === 0 ? '0' : share.toFixed(share < 0.1 ? 2 : 1)}\u00a0%`;
    rows.push(fact(t('f_packets'), t('packets', { received: fmtInt(rx ?? 0), lost: fmtInt(lost ?? 0), pct })));
  }
  if (c.ended_at) {
    const price = fmtCost(c.cost, c.currency);
    const lost = costMissing(c) === 'costLostHint';
    const f = fact(t('f_cost'), price ?? t(lost ? 'costUnknown' : 'notPriced'));
    f.title = price ? t('costHint') : t(costMissing(c));
    f.classList.add('cost');
    rows.push(f);
  }
  const tools = num(c.tool_calls) ?? 0;
  if (tools > 0) rows.push(fact(t('f_tools'), fmtInt(tools)));
  const usage = usageChips(c.usage);
  if (usage.length) {
    const f = fact(t('f_usage'), ...usage);
    f.classList.add('usage');
    rows.push(f);
  }
  if (str(c.node)) rows.push(fact(t('f_node'), c.node));
  const settings = settingsChips(c.settings);
  if (settings.length) rows.push(fact(t('f_settings'), ...settings));
  if (str(c.user_agent)) {
    const ua = fact(t('f_ua'), el('span', 'ua', c.user_agent));
    ua.classList.add('wide');
    rows.push(ua);
  }
  ui.facts.replaceChildren(...rows);
}

// "ASR pocketsphinx", "LLM local (model)", "TTS flite · slt" as separate chips.
function enginesText(e) {
  if (!e || typeof e !== 'object') return [];
  const out = [];
  const add = (kind, name, model, voice) => {
    if (!str(name)) return;
    const chip = el('span', 'engine');
    chip.append(el('span', 'kind', kind), document.createTextNode(name));
    if (str(model)) chip.append(el('span', 'model', model));
    if (str(voice)) chip.append(el('span', 'model', voice));
    out.push(chip);
  };
  add('ASR', e.asr, e.asr_model);
  add('LLM', e.llm, e.llm_model);
  add('TTS', e.tts, e.tts_model, e.tts_voice);
  return out;
}

// The caller's per-call settings, one chip each; long prompts are cut.
function settingsChips(s) {
  if (!s || typeof s !== 'object' || Array.isArray(s)) return [];
  const out = [];
  for (const [k, v] of Object.entries(s)) {
    if (v === null || typeof v === 'object') continue;
    let shown = String(v);
    if (shown.length > 60) shown = `${shown.slice(0, 57)}…`;
    const chip = el('span', 'engine');
    chip.title = String(v);
    chip.append(el('span', 'kind', k), document.createTextNode(shown === '' ? '""' : shown));
    out.push(chip);
  }
  return out;
}

function renderRecording(c) {
  const rec = c.recording && typeof c.recording === 'object' ? c.recording : null;
  ui.recBody.replaceChildren();
  if (!rec) {
    ui.recBody.append(el('p', 'muted', t('noRecording')));
    return;
  }
  // The address is made here from the id rather than taken from the record.
  const url = `/api/calls/${encodeURIComponent(c.id)}/recording`;
  const audio = el('audio', 'player');
  audio.controls = true;
  audio.preload = 'metadata';
  audio.setAttribute('aria-label', t('recPlayer'));
  const broken = el('p', 'field-error', '');
  broken.setAttribute('role', 'alert');
  audio.addEventListener('error', () => { broken.textContent = t('recBroken'); });
  audio.src = url;
  const dl = el('a', 'chip');
  dl.href = url;
  dl.download = `tingshuo-${c.id}.ogg`;
  dl.append(document.createTextNode(t('download')));
  const size = fmtBytes(rec.bytes);
  const row = el('div', 'rec-row');
  row.append(audio, dl);
  ui.recBody.append(row, broken);
  if (size) ui.recBody.append(el('p', 'muted small', t('recFormat', { size })));
}

// --- the conversation -------------------------------------------------------------

function bubble(role, text) {
  const b = el('div', `msg ${role}`);
  b.append(el('span', 'sr', `${t(role === 'user' ? 'caller' : 'ai')}: `), el('p', 'text', text));
  return b;
}

function renderTurns(c) {
  const turns = Array.isArray(c.turns) ? c.turns.filter((x) => x && typeof x === 'object') : [];
  turns.sort((a, b) => (num(a.index) ?? 0) - (num(b.index) ?? 0));
  if (!turns.length) {
    ui.turns.replaceChildren(el('p', 'muted empty-turns', t('noTurns')));
    return;
  }
  const start = parseTime(c.connected_at) || parseTime(c.created_at);
  const scale = chartScale(turns);
  state.chartWidth = ui.turns.clientWidth;
  ui.turns.replaceChildren(...turns.map((turn, i) => renderTurn(turn, i, start, scale)));
}

function renderTurn(turn, i, start, scale) {
  const box = el('article', 'turn');
  box.dataset.index = String(num(turn.index) ?? i);
  const n = (num(turn.index) ?? i) + 1;
  const head = el('p', 'turn-head');
  head.append(el('span', 'turn-n', t('turnN', { n })));
  const at = parseTime(turn.at);
  if (at && start) {
    const off = el('time', 'turn-at', fmtDuration(Math.max(0, (at - start) / 1000)));
    off.dateTime = at.toISOString();
    off.title = fmtFull(at);
    head.append(off);
  }
  box.append(head);

  const said = typeof turn.transcript === 'string' ? turn.transcript : null;
  if (said !== null && said.trim()) box.append(bubble('user', said));
  const calls = Array.isArray(turn.tool_calls) ? turn.tool_calls.filter((x) => x && typeof x === 'object') : [];
  box.append(...calls.map(toolCard));
  const untold = (num(turn.tool_call_count) ?? 0) - calls.length;
  if (untold > 0) box.append(el('p', 'tool-more muted', t('toolsMore', { n: fmtInt(untold) })));
  const reply = typeof turn.reply === 'string' ? turn.reply : '';
  if (reply || turn.interrupted === true) {
    const b = bubble('ai', reply);
    if (turn.interrupted === true) {
      b.classList.add('interrupted');
      b.append(el('span', 'tag', t('interrupted')));
    }
    box.append(b);
  }
  const err = str(turn.error);
  if (err) {
    const p = el('p', 'turn-error');
    p.append(icon('warn'), el('span', null, t('engineError', { error: err })));
    box.append(p);
  }
  // A reply alone (greeting, prompt) has no stages before its TTS: its time to first audio
  // goes with its usage rather than into a chart of one bar.
  const alone = said === null && num(turn.voice_to_voice_ms) === null;
  const firstAudio = alone ? num(turn.tts_first_audio_ms) : null;
  const barge = alone ? num(turn.barge_in_ms) : null;
  const used = usageChips(turn.usage);
  if (used.length || turn.tts_cached === true || firstAudio !== null || barge !== null) {
    const line = el('p', 'turn-usage');
    if (turn.tts_cached === true) {
      const tag = el('span', 'tag cached', t('ttsCached'));
      tag.title = t('ttsCachedHint');
      line.append(tag);
    }
    if (firstAudio !== null) line.append(el('span', 'first-audio', `${t('l_tts')}: ${msText(firstAudio)}`));
    if (barge !== null) line.append(el('span', 'first-audio', `${t('l_barge')}: ${msText(barge)}`));
    line.append(...used);
    box.append(line);
  }
  const chart = alone ? null : waterfall(turn, n, scale);
  if (chart) box.append(chart);
  return box;
}

// A tool the AI called while answering, as the call page shows it: "⚙ name(arguments)
// → result · 180 ms", or "failed: …" in amber. Long values are shortened here; the
// full value (as much as the record kept) is in the title.
const compact = (v, max = 160) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v ?? null);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
};

function toolCard(c) {
  const card = el('div', 'msg tool');
  const args = c.arguments ?? {};
  const call = el('code', 'call', `${str(c.tool) ?? '?'}(${compact(args)})`);
  call.title = typeof args === 'string' ? args : JSON.stringify(args);
  if (c.arguments_truncated === true) call.title += ` (${t('toolCut')})`;
  card.append(el('span', 'sr', `${t('tool')}: `), call);
  const result = el('span', 'result');
  const ms = num(c.ms);
  if (c.is_error !== true && c.is_error !== false) {
    card.classList.add('none');
    result.textContent = t('toolNoResult');
  } else {
    card.classList.toggle('error', c.is_error === true);
    const full = typeof c.result === 'string' ? c.result : JSON.stringify(c.result ?? null);
    result.textContent = `${c.is_error ? `${t('toolFailed')}: ` : '→ '}${compact(c.result)}${ms !== null ? ` · ${msText(ms)}` : ''}`;
    result.title = c.result_truncated === true ? `${full} (${t('toolCut')})` : full;
  }
  card.append(result);
  return card;
}

// --- the latency waterfall -------------------------------------------------------

// The parts of voice to voice in the order they happen; `other` is the rest.
// `short` labels the rows of a chart on a narrow screen; the legend has the long ones.
const STAGES = [
  { key: 'endpoint_ms', label: 'l_endpoint' },
  { key: 'asr_ms', label: 'l_asr' },
  { key: 'llm_first_sentence_ms', label: 'l_llm', short: 's_llm' },
  { key: 'tts_first_audio_ms', label: 'l_tts', short: 's_tts' },
  { key: 'overhead_ms', label: 'l_other', hint: 'otherHint' },
];

// Each stage's start and length on the turn's clock, or null when the turn
// has no figures. A reply made in the caller's pause (docs/turns.md) had its
// recognition, LLM and TTS during the endpoint's silence: when the stages
// add up to more than voice to voice, they are drawn inside the pause,
// ending where the rest (`other`) begins, and `early` says so.
function stagesOf(turn) {
  const v2v = num(turn.voice_to_voice_ms);
  const parts = STAGES.slice(0, 4).map((s) => num(turn[s.key]));
  if (v2v === null && parts.every((v) => v === null)) return null;
  const known = parts.reduce((a, v) => a + Math.max(0, v ?? 0), 0);
  let other = num(turn.overhead_ms);
  if (other === null && v2v !== null) other = v2v - known;
  if (other !== null) other = Math.max(0, other);
  const early = v2v !== null && known + (other ?? 0) > v2v + 1;
  const engines = known - Math.max(0, parts[0] ?? 0);
  let at = 0;
  const stages = [...parts, other].map((ms, i) => {
    if (early && i === 1) at = Math.max(0, v2v - (other ?? 0) - engines);
    const s = { ...STAGES[i], start: at, ms };
    at += Math.max(0, ms ?? 0);
    return s;
  });
  return { stages, total: v2v, firstToken: num(turn.llm_first_token_ms), early };
}

// One time axis for every turn of the call, so turns compare at a glance.
function chartScale(turns) {
  let max = 0;
  for (const turn of turns) {
    const f = stagesOf(turn);
    if (f) max = Math.max(max, f.total ?? 0, ...f.stages.map((s) => s.start + Math.max(0, s.ms ?? 0)));
  }
  return niceAxis(max);
}

// Up to about five ticks at 1, 2, 2.5 or 5 times a power of ten.
function niceAxis(max) {
  if (!(max > 0)) return { max: 100, step: 25 };
  const raw = max / 5, pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  return { max: Math.ceil(max / step) * step, step };
}

const SVG_NS = 'http://www.w3.org/2000/svg';
function svg(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// Below 10 ms a tenth still says something (a local LLM answers in well under one).
// What each drawn chart was drawn from, to draw it again at another width.
const charts = new WeakMap();

const msText = (v) => (v === null ? '–' : v < 10 ? `${new Intl.NumberFormat(locale(), { maximumFractionDigits: 1 }).format(v)} ms`
  : `${fmtInt(Math.round(v))} ms`);

// "43 ms", "1.2 s".
const fmtSeconds = (ms) => (ms < 1000 ? `${Math.max(0, Math.round(ms))} ms` : `${(ms / 1000).toFixed(1)} s`);

function waterfall(turn, n, scale) {
  const f = stagesOf(turn);
  const barge = num(turn.barge_in_ms);
  if (!f) return null;
  const fig = el('figure', 'wf-wrap');
  fig.dataset.turn = String(n);
  fig.append(drawChart(f, n, scale, ui.turns.clientWidth || 600));
  if (f.early) fig.append(el('figcaption', 'wf-note', t('l_early')));
  if (barge !== null) fig.append(el('figcaption', 'wf-note', `${t('l_barge')}: ${msText(barge)}`));
  charts.set(fig, { f, n, scale });
  return fig;
}

function drawChart(f, n, scale, width) {
  const W = Math.max(260, Math.floor(width - 2));
  const narrow = W < 520;
  const labelW = narrow ? 72 : 132, valueW = 64, x0 = labelW, plotW = W - labelW - valueW;
  const rowH = narrow ? 20 : 22, barH = narrow ? 11 : 12, top = 6;
  const rows = [{ key: 'voice_to_voice_ms', label: 'l_v2v', short: 's_v2v', start: 0, ms: f.total, total: true }, ...f.stages];
  const H = top + rows.length * rowH + 22;
  const sx = plotW / scale.max;
  const x = (ms) => x0 + ms * sx;

  const parts = rows.map((r) => `${t(r.label)} ${r.ms === null ? '–' : `${Math.round(r.ms)} ${t('ms')}`}`).join(', ');
  const root = svg('svg', { class: 'wf', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img',
    'aria-label': t('chartLabel', { n, parts }) });
  root.dataset.turn = String(n);

  // Tick labels at least 56 px apart; the last one carries the unit.
  const grid = svg('g', { class: 'grid' });
  const every = Math.max(1, Math.ceil(56 / (scale.step * sx)));
  const ticks = Math.round(scale.max / scale.step);
  for (let i = 0; i <= ticks; i++) {
    const v = i * scale.step, gx = Math.round(x(v)) + 0.5;
    grid.append(svg('line', { x1: gx, x2: gx, y1: top - 2, y2: top + rows.length * rowH }));
    if (i % every && i !== ticks) continue;
    if (i !== ticks && ticks - i < every) continue; // too close to the last
    const label = i === 0 ? '0' : fmtInt(v) + (i === ticks ? ' ms' : '');
    grid.append(svg('text', { x: gx, y: H - 6, 'text-anchor': i === 0 ? 'start' : 'middle', class: 'tick' }, label));
  }
  root.append(grid);

  rows.forEach((r, i) => {
    const y = top + i * rowH, cy = y + rowH / 2;
    const g = svg('g', { class: r.total ? 'row total' : 'row' });
    g.dataset.key = r.key;
    const label = svg('text', { x: labelW - 10, y: cy, 'text-anchor': 'end', 'dominant-baseline': 'central', class: 'label' },
      t(narrow && r.short ? r.short : r.label));
    g.append(label);
    if (r.ms !== null && r.ms > 0) {
      const bx = x(r.start), bw = Math.max(2, r.ms * sx);
      const bar = svg('rect', { class: 'bar', x: bx.toFixed(1), y: (cy - barH / 2).toFixed(1), width: bw.toFixed(1),
        height: barH, rx: 2 });
      bar.dataset.key = r.key;
      bar.append(svg('title', {}, `${t(r.label)}: ${msText(r.ms)}${r.hint ? ` (${t(r.hint)})` : ''}`));
      g.append(bar);
      if (r.key === 'llm_first_sentence_ms' && f.firstToken !== null && f.firstToken > 0 && f.firstToken < r.ms) {
        const mx = (x(r.start + f.firstToken)).toFixed(1);
        const mark = svg('line', { class: 'mark', x1: mx, x2: mx, y1: cy - barH / 2 - 3, y2: cy + barH / 2 + 3 });
        mark.append(svg('title', {}, `${t('l_token')}: ${msText(f.firstToken)}`));
        g.append(mark);
      }
    }
    const vx = r.ms !== null && r.ms > 0 ? x(r.start) + Math.max(2, r.ms * sx) + 6 : x(r.start) + 4;
    g.append(svg('text', { x: vx.toFixed(1), y: cy, 'dominant-baseline': 'central', class: 'value' }, msText(r.ms)));
    root.append(g);
  });
  return root;
}

function renderLegend() {
  ui.legend.replaceChildren(...STAGES.map((s) => {
    const li = el('li', null, t(s.label));
    li.dataset.key = s.key;
    if (s.hint) li.title = t(s.hint);
    return li;
  }), el('li', 'token', t('l_token')));
}

// Charts are drawn at their pixel width; a new width draws them again.
function redrawCharts() {
  const w = ui.turns.clientWidth;
  if (!w || Math.abs(w - state.chartWidth) < 1) return;
  state.chartWidth = w;
  for (const fig of ui.turns.querySelectorAll('figure.wf-wrap')) {
    const old = fig.querySelector('svg.wf'), c = charts.get(fig);
    if (old && c) old.replaceWith(drawChart(c.f, c.n, c.scale, w));
  }
}

// --- delete --------------------------------------------------------------------------

function askDelete() {
  if (!state.call.data) return;
  ui.confirm.returnValue = '';
  ui.confirm.showModal();
}

async function onConfirmClose() {
  if (ui.confirm.returnValue !== 'delete' || !state.call.data) { ui.del.focus(); return; }
  const id = state.call.data.id;
  ui.del.disabled = true;
  ui.del.querySelector('span').textContent = t('deleting');
  try {
    await api(`/api/calls/${encodeURIComponent(id)}`, { method: 'DELETE' });
  } catch (err) {
    if (err instanceof AuthError) { showLogin(); return; }
    if (!(err instanceof HttpError && err.status === 404)) {
      showToast(t('deleteFailed', { message: describeError(err) }));
      return;
    }
  } finally {
    ui.del.disabled = false;
    ui.del.querySelector('span').textContent = t('delete');
  }
  state.list.calls = state.list.calls.filter((c) => c.id !== id);
  state.call = { ...state.call, id: null, data: null };
  navigate(state.listUrl, { replace: true });
  showToast(t('deleted'));
  ui.listTitle.focus({ preventScroll: true });
}

// --- the interface language ---------------------------------------------------------

function applyLang(lang) {
  state.lang = lang;
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const e of document.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of document.querySelectorAll('[data-i18n-aria]')) e.setAttribute('aria-label', t(e.dataset.i18nAria));
  for (const e of document.querySelectorAll('[data-i18n-placeholder]')) e.placeholder = t(e.dataset.i18nPlaceholder);
  ui.lang.textContent = t('switchTo');
  ui.lang.lang = lang === 'zh' ? 'en' : 'zh';
  ui.lang.setAttribute('aria-label', t('switchLabel'));
  const keep = ui.reason.value;
  ui.reason.replaceChildren(el('option', null, t('anyReason')), ...REASONS.map(([r]) => {
    const o = el('option', null, t(`r_${r}`));
    o.value = r;
    return o;
  }));
  ui.reason.options[0].value = '';
  ui.reason.value = keep;
  if (state.view === 'list') { renderList(); document.title = `${t('history')} · tingshuo`; }
  if (state.view === 'call') { renderCall(); }
  if (state.view === 'login') document.title = `${t('loginTitle')} · tingshuo`;
}

function switchLang() {
  const next = state.lang === 'zh' ? 'en' : 'zh';
  store.set('tingshuo.lang', next);
  applyLang(next);
}

// --- wiring ---------------------------------------------------------------------------

if ('scrollRestoration' in history) history.scrollRestoration = 'manual';
document.addEventListener('click', onLinkClick);
window.addEventListener('popstate', () => {
  if (state.view === 'list') state.list.scrollY = window.scrollY;
  render();
});
ui.lang.onclick = switchLang;
ui.logout.onclick = onLogout;
ui.logout.hidden = !session.get('tingshuo.signedIn');
ui.loginForm.addEventListener('submit', onLogin);
ui.filters.addEventListener('submit', (ev) => { ev.preventDefault(); applyFilters(); });
ui.filters.addEventListener('input', onFilterInput);
ui.filters.addEventListener('change', onFilterInput);
ui.clear.onclick = clearFilters;
ui.more.onclick = () => loadList(readQuery(), true);
$('list-retry').onclick = () => loadList(readQuery(), false);
$('call-retry').onclick = () => { state.call.id = null; render(); };
ui.del.onclick = askDelete;
ui.confirm.addEventListener('close', onConfirmClose);
if ('ResizeObserver' in window) new ResizeObserver(() => requestAnimationFrame(redrawCharts)).observe(ui.turns);

applyLang(pickLang());
render();
