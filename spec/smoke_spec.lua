local coru = require "coru"
describe("smoke", function()
  it("sleeps in a task", function()
    local r = coru.run(function() coru.sleep(5) return 7 end)
    assert.equal(7, r)
  end)
end)
