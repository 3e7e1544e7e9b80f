-- Seeded generators of texts and cases for spec/dmp_spec.lua and the
-- benchmark: random and adversarial texts (emoji and other astral
-- characters, combining marks, CRLF, NUL, encodeURI's special characters).
local M = {}
local random = math.random
local concat = table.concat

M.atoms = {
  "a", "b", "c", "x", "y", "z", "e", "o", " ", " ", "\n", "\n", "\r\n", "\t",
  "%", "+", "#", ";", "/", "?", ":", "@", "&", "=", "$", ",", "~", "'", "(", ")", "!", "*",
  "%20", "%25", "%2B", "\0", "é", "ü", "中", "文", "\u{2028}", "\u{FEFF}",
  "😀", "😁", "🎉", "👍🏽", "𝄞", "e\u{301}", "a\u{308}\u{301}",
  "the ", "quick ", "brown ", "fox\n", "line\n", "\n\n", "1", "2", "3",
}

-- An array of n atoms drawn from the first k atoms (small k: repetitive text).
function M.atoms_of(n, k)
  local t, A = {}, M.atoms
  k = math.min(k or #A, #A)
  for i = 1, n do t[i] = A[random(k)] end
  return t
end

local function copy(t) local c = {} for i = 1, #t do c[i] = t[i] end return c end

-- k random edits (insert, delete, replace of a few atoms).
function M.mutate(t, k, pool)
  t = copy(t)
  for _ = 1, k do
    local op = random(3)
    local pos = random(#t + 1)
    if op == 1 or #t == 0 then
      for _ = 1, random(4) do table.insert(t, pos, M.atoms[random(pool or #M.atoms)]) end
    elseif op == 2 then
      for _ = 1, random(4) do if t[pos] then table.remove(t, pos) end end
    else
      if t[pos] then t[pos] = M.atoms[random(pool or #M.atoms)] end
    end
  end
  return t
end

M.str = concat

function M.lines(n, fmt)
  local t = {}
  for i = 1, n do t[i] = (fmt or "line %d\n"):format(i) end
  return t
end

-- Server tunables (FLOOBITS-PROTOCOL.md section 6) or the reference defaults.
M.server = {diff_timeout = 1.0, diff_edit_cost = 4, match_threshold = 0.375, match_distance = 100,
            patch_delete_threshold = 0.375, patch_margin = 4}
M.defaults = {diff_timeout = 1.0, diff_edit_cost = 4, match_threshold = 0.5, match_distance = 1000,
              patch_delete_threshold = 0.5, patch_margin = 4}

-- Pairs (a, b, c) of texts: a the old text, b the new one, c another base.
function M.text_pairs(count)
  local out = {}
  local function add(a, b, c) out[#out + 1] = {a = a, b = b, c = c or a} end
  local E = ("😀"):rep(400)
  add("", "") add("", "abc") add("abc", "") add("same text", "same text") add("a", "b") add("a", "")
  add("😀", "😁") add("a", "😀") add("😀😁", "😀😂") add("x😀", "x😁y") add("😀a😀", "😁a😁")
  add(E .. "abc", E .. "abXc", E .. "zabc") add(E .. "abc", E .. "a😁bc") add("ab" .. E, "ab" .. E .. "🎉")
  add("\u{10FFFF}\u{10000}", "\u{10000}\u{10FFFF}")
  add("one\r\ntwo\r\nthree\r\n", "one\r\ntwo!\r\nthree\r\nfour\r\n")
  add("a\0b\0c", "a\0\0b c") add("%+# ;/?:@&=$,", "%2B+#  ;/?:@&=$,%")
  local long = M.str(M.atoms_of(5000, 20))
  add(long, long .. "tail") add("head" .. long, (long:gsub("a", "A", 3)))
  local line = ("lorem ipsum dolor sit amet, "):rep(400)  -- one long line
  add(line, line:gsub("dolor", "DOLOR", 3), line:gsub("amet", "", 2))
  local L = M.lines(45000)
  local L2 = M.mutate(L, 6, 12)
  add(M.str(L), M.str(L2), M.str(M.mutate(L, 3, 12)))
  -- edits past line 40,000, where the first text's lines share one code
  local L3 = {}
  for i = 1, #L do L3[i] = L[i] end
  for _ = 1, 4 do L3[random(40001, 45000)] = "changed\n" end
  table.insert(L3, random(40001, 45000), "new line\n")
  add(M.str(L), M.str(L3))
  local big = M.atoms_of(40000, #M.atoms)
  add(M.str(big), M.str(M.mutate(big, 10)), M.str(M.mutate(big, 5)))
  local body = M.str(M.lines(12, "some line number %d\n"))
  add(body .. "hasOwnProperty", body:gsub("5", "five") .. "hasOwnProperty")
  add(body .. "__proto__", body:gsub("7", "seven") .. "__proto__")
  add(body .. "__proto__\n__proto__", "__proto__\n" .. body:gsub("3", "three") .. "__proto__")
  -- many hunks applied to a base whose text moved before each of them by
  -- about the matching range (37 units with the server's tunables): the
  -- reference's non-cumulative delta decides which hunks are found
  for n = 1, 24 do
    local a, b, c = {}, {}, {}
    for p = 1, 8 do
      local para = M.atoms_of(random(40, 80), 30)
      a[#a + 1], c[#c + 1] = M.str(para), ("z"):rep(random(n % 2 == 0 and 10 or 100, n % 2 == 0 and 30 or 400))
      c[#c + 1] = a[#a]
      b[#b + 1] = M.str(M.mutate(para, 1, 30))
    end
    add(M.str(a), M.str(b), M.str(c))
  end
  while #out < count do
    local n = random(10) == 1 and random(2000) or random(0, 80)
    local k = random(3) == 1 and random(8, 20) or #M.atoms
    local a = M.atoms_of(n, k)
    local b = M.mutate(a, random(0, 6), k)
    local c = M.mutate(a, random(0, 3), k)
    add(M.str(a), M.str(b), M.str(c))
  end
  return out
end

-- Patch texts, valid and malformed.
function M.patch_texts(valid)
  local t = {
    "", "\n", "x", "@@ -1 +1 @@", "@@ -1 +1 @@\n", "@@ -1,2 +1 @", "@@ -a +1 @@\n", "@@ -1,2 +1,3 @@x\n",
    "@@ -1, +1, @@\n a\n", "@@ -00 +1 @@\n a\n", "@@ -0,0 +1 @@\n+a\n", "@@ -1 +1 @@\n-a\n+b\n",
    "@@ -1 +1 @@\n-%\n", "@@ -1 +1 @@\n-%G0\n", "@@ -1 +1 @@\n-%C0%80\n", "@@ -1 +1 @@\n-%ED%A0%80\n",
    "@@ -1 +1 @@\n-%E2%82\n", "@@ -1 +1 @@\n-%FF\n", "@@ -1 +1 @@\n-%C3\n", "@@ -1 +1 @@\n+%2B%23%3b%41\n",
    "@@ -1,3 +1,3 @@\n a\n-\n \n+b\n", "@@ -1,3 +1,3 @@\n a\n x\n", "@@ -1,3 +1,3 @@\n a\n\n\n b\n",
    "@@ -1 +1 @@\r\n-a\n", "@@ -1 +1 @@\n-a\r\n", "@@ -1 +1 @@\n-a\n@@ -3 +3 @@\n+b\n",
    "@@ -1 +1 @@\n-a\n@@ bad\n", "@@ -1 +1 @@\n\xC3\xA9a\n", "@@ -1 +1 @@\n-\xF0\x9F\x98\x80\n",
    "@@ -1 +1 @@\n-%F0%9F%98%80\n+%F0%9F%98%81\n", "@@ -1 +1 @@\n-a", "@@ -1 +1 @@\n-a\n@@",
    "@@ -9999999 +1 @@\n-a\n", "@@ -1,0 +1,0 @@\n", "@@ -2,3 +2,3 @@\n  \n-%0A\n+%0D%0A\n",
  }
  for _, v in ipairs(valid) do
    t[#t + 1] = v
    if #v > 4 then
      local cut = random(#v)
      t[#t + 1] = v:sub(1, cut)                                   -- truncated
      t[#t + 1] = v:sub(1, cut) .. "%" .. v:sub(cut + 1)          -- a stray escape
      t[#t + 1] = v:gsub("\n([-+ ])", "\n%1%%2B", 1)               -- reserved escape
    end
  end
  return t
end

return M
