--[[
Test-only rules for the rspamd started by scripts/rspamd.sh.

rspamd's rules/rspamd.lua runs `$LOCAL_CONFDIR/rspamd.local.lua` at start-up,
and the script sets LOCAL_CONFDIR to test/rspamd-server, so this file is loaded
without touching /etc/rspamd.

A test message asks for a verdict with headers (see README.md):

  X-Test-Action: no action | greylist | add header | rewrite subject | reject
      A postfilter adds the symbol TEST_ACTION with the weight that brings the
      total score exactly to a fixed value inside that action's band of
      local.d/actions.conf (0, 5, 7, 10, 20). rspamd then picks the action from
      the score itself, so the reply is a realistic one: score, required_score,
      symbols and action all agree.
  X-Test-Action: soft reject | discard | quarantine
      These actions have no score threshold: they are set as a pre-result
      (as rspamd's own greylist/ratelimit/force_actions modules do).
  X-Test-Smtp-Message: text     -> reply messages.smtp_message = text
  X-Test-Subject: text          -> reply subject = text (for rewrite subject)
  X-Test-Milter: yes            -> reply milter block: add X-Test-Added: 1,
                                   remove X-Test-Remove
  X-Test-Milter: full           -> same plus {value, order} and list values and
                                   a remove-all (0) entry
  X-Test-Milter-Rcpt: addr      -> reply milter block add_rcpt = { addr }
  X-Test-Milter-Del-Rcpt: addr  -> reply milter block del_rcpt = { addr }
  X-Test-Milter-From: addr      -> reply milter block change_from = addr
  X-Test-Delay: ms              -> the scan takes that long (max 60000;
                                   rspamd's task_timeout of 8 s still applies)
  X-Test-Burn: ms               -> the scan burns that much CPU in the worker
                                   (max 1000), blocking it like a heavy rule
  X-Test-Rewrite: text          -> the message's body becomes `text` (task:set_message),
                                   so with Flags body_block rspamd appends the
                                   rewritten message after its JSON (Message-Offset)
Messages without these headers are scanned by the stock rules only.
]]--

local rspamd_logger = require "rspamd_logger"

local function hval(task, name)
  local v = task:get_header(name)
  if not v then return nil end
  v = v:gsub('^%s+', ''):gsub('%s+$', '')
  if v == '' then return nil end
  return v
end

-- Final score per action; must stay inside the bands of local.d/actions.conf
-- (greylist 4, add_header 6, rewrite_subject 8, reject 15).
local target_score = {
  ['no action'] = 0,
  ['greylist'] = 5,
  ['add header'] = 7,
  ['rewrite subject'] = 10,
  ['reject'] = 20,
}
-- Actions without a threshold: set as pre-result.
local pre_result_actions = {
  ['soft reject'] = true,
  ['discard'] = true,
  ['quarantine'] = true,
}

-- Postfilter: it runs after all normal rules, so the current score is final
-- except for what we add here.
rspamd_config:register_symbol({
  name = 'TEST_ACTION',
  type = 'postfilter',
  score = 1.0,
  group = 'test',
  description = 'Test: verdict requested by X-Test-Action',
  callback = function(task)
    local want = hval(task, 'X-Test-Action')
    if not want then return end
    want = want:lower():gsub('_', ' '):gsub('%s+', ' ')
    if task:has_pre_result() then
      -- e.g. GTUBE: rspamd already decided; do not pretend otherwise
      rspamd_logger.infox(task, 'X-Test-Action %s ignored: pre-result already set', want)
      return
    end
    if target_score[want] then
      local cur = task:get_metric_score('default')[1] or 0
      task:insert_result('TEST_ACTION', target_score[want] - cur, want)
    elseif pre_result_actions[want] then
      task:insert_result('TEST_ACTION', 0.0, want)
      local msg = hval(task, 'X-Test-Smtp-Message') or ('Test ' .. want)
      task:set_pre_result(want, msg, 'test_action')
    else
      rspamd_logger.warnx(task, 'unknown X-Test-Action: %s', want)
    end
  end,
})

rspamd_config:register_symbol({
  name = 'TEST_SMTP_MESSAGE',
  score = 0.0,
  group = 'test',
  description = 'Test: messages.smtp_message from X-Test-Smtp-Message',
  callback = function(task)
    local msg = hval(task, 'X-Test-Smtp-Message')
    if not msg then return end
    task:append_message(msg, 'smtp_message')
    task:insert_result('TEST_SMTP_MESSAGE', 1.0)
  end,
})

rspamd_config:register_symbol({
  name = 'TEST_SUBJECT',
  score = 0.0,
  group = 'test',
  description = 'Test: reply subject from X-Test-Subject',
  callback = function(task)
    local subj = hval(task, 'X-Test-Subject')
    if not subj then return end
    task:set_metric_subject(subj)
    task:insert_result('TEST_SUBJECT', 1.0)
  end,
})

rspamd_config:register_symbol({
  name = 'TEST_MILTER',
  score = 0.0,
  group = 'test',
  description = 'Test: milter add/remove headers on X-Test-Milter: yes|full',
  callback = function(task)
    local v = hval(task, 'X-Test-Milter')
    v = v and v:lower()
    if v == 'yes' then
      task:set_milter_reply({
        add_headers = { ['X-Test-Added'] = '1' },
        remove_headers = { ['X-Test-Remove'] = 1 },
      })
    elseif v == 'full' then
      -- every value form a client has to handle: string, {value, order},
      -- list of {value, order}; remove the 1st, and all (0) occurrences
      task:set_milter_reply({
        add_headers = {
          ['X-Test-Added'] = '1',
          ['X-Test-Ordered'] = { value = 'first', order = 0 },
          ['X-Test-Multi'] = { { value = 'a', order = 1 }, { value = 'b', order = 2 } },
        },
        remove_headers = { ['X-Test-Remove'] = 1, ['X-Test-Remove-All'] = 0 },
      })
    else
      return
    end
    task:insert_result('TEST_MILTER', 1.0, v)
  end,
})

-- X-Test-Delay: <ms> (up to 60000): the scan waits that long before it
-- finishes, to test client timeouts against a real server. Lua in rspamd has
-- no sleep; we open a TCP connection to our own controller, send an
-- incomplete HTTP request and wait for a reply that cannot come: the
-- request's timeout is the delay. Loopback only, nothing blocks the worker.
-- Note rspamd's own task_timeout (8 s in options.inc): past it rspamd ends the
-- task itself and replies with what it has.
local rspamd_tcp = require "rspamd_tcp"
local test_opts = rspamd_config:get_all_opt('test_rules') or {}
local delay_host, delay_port = tostring(test_opts.delay_socket or ''):match('^(.+):(%d+)$')

rspamd_config:register_symbol({
  name = 'TEST_DELAY',
  score = 0.0,
  group = 'test',
  description = 'Test: scan delayed by X-Test-Delay milliseconds',
  callback = function(task)
    local ms = tonumber(hval(task, 'X-Test-Delay') or '')
    if not ms or ms <= 0 then return end
    if not delay_port then
      rspamd_logger.errx(task, 'X-Test-Delay: no test_rules.delay_socket configured')
      return
    end
    ms = math.min(ms, 60000)
    local ok = rspamd_tcp.request({
      task = task,
      host = delay_host,
      port = tonumber(delay_port),
      timeout = ms / 1000.0,
      data = 'GET /ping HTTP/1.1\r\n', -- never completed: no final empty line
      read = true,
      callback = function(err)
        task:insert_result('TEST_DELAY', 1.0, string.format('%dms', ms), err or 'no error')
      end,
    })
    if not ok then
      rspamd_logger.errx(task, 'X-Test-Delay: cannot connect to %s:%s', delay_host, delay_port)
    end
  end,
})

-- X-Test-Burn: <ms> (up to 1000): the scan spins on the CPU for that many ms of
-- this worker's CPU time (os.clock), blocking the worker as a heavy rule would:
-- a normal worker then finishes about 1000 / ms scans per second, one at a
-- time, for overload benchmarks (bench/overload.ts). Capped so that a bad
-- header cannot hold the worker for long; the option says how much was burnt.
local BURN_MAX_MS = 1000

rspamd_config:register_symbol({
  name = 'TEST_BURN',
  score = 0.0,
  group = 'test',
  description = 'Test: X-Test-Burn milliseconds of CPU spent in the worker',
  callback = function(task)
    local ms = tonumber(hval(task, 'X-Test-Burn') or '')
    if not ms or ms ~= ms or ms <= 0 then return end
    ms = math.floor(math.min(ms, BURN_MAX_MS))
    local stop = os.clock() + ms / 1000.0
    local spins = 0
    while os.clock() < stop do
      spins = spins + 1
    end
    task:insert_result('TEST_BURN', 1.0, string.format('%dms', ms))
  end,
})

rspamd_config:register_symbol({
  name = 'TEST_MILTER_ENVELOPE',
  score = 0.0,
  group = 'test',
  description = 'Test: milter envelope changes on X-Test-Milter-Rcpt / -Del-Rcpt / -From',
  callback = function(task)
    local add = hval(task, 'X-Test-Milter-Rcpt')
    local del = hval(task, 'X-Test-Milter-Del-Rcpt')
    local from = hval(task, 'X-Test-Milter-From')
    if not (add or del or from) then return end
    local reply = {}
    if add then reply.add_rcpt = { add } end
    if del then reply.del_rcpt = { del } end
    if from then reply.change_from = from end
    task:set_milter_reply(reply)
    task:insert_result('TEST_MILTER_ENVELOPE', 1.0)
  end,
})

rspamd_config:register_symbol({
  name = 'TEST_REWRITE',
  score = 0.0,
  group = 'test',
  description = 'Test: body replaced by X-Test-Rewrite (a rewritten message)',
  callback = function(task)
    local text = hval(task, 'X-Test-Rewrite')
    if not text then return end
    local content = tostring(task:get_content())
    local eoh = content:find('\r\n\r\n', 1, true)
    local eol = '\r\n'
    if not eoh then
      eoh = content:find('\n\n', 1, true)
      eol = '\n'
    end
    if not eoh then return end
    task:set_message(content:sub(1, eoh - 1) .. eol .. 'X-Test-Rewritten: yes' .. eol .. eol .. text .. eol)
    task:insert_result('TEST_REWRITE', 1.0)
  end,
})
