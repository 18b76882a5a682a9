package supervisor

import (
	"strings"
	"testing"
	"time"
)

func TestRestartPolicies(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	type step struct {
		now, started float64
		delay        time.Duration
		ok           bool
	}
	for _, tc := range []struct {
		name  string
		cfg   RestartConfig
		steps []step
	}{
		{"none", RestartConfig{}, []step{{1, 0, 0, false}}},
		{"fixed-delay", RestartConfig{Strategy: RestartFixedDelay, Attempts: 2, Delay: 3 * time.Second}, []step{
			{1, 0, 3 * time.Second, true}, {10, 4, 3 * time.Second, true}, {20, 13, 0, false},
		}},
		{"exponential-delay", RestartConfig{Strategy: RestartExponentialDelay, Delay: time.Second, MaxDelay: 5 * time.Second, Multiplier: 2, ResetAfter: 100 * time.Second, Jitter: 1e-9}, []step{
			{1, 0, time.Second, true}, {3, 2, 2 * time.Second, true}, {6, 5, 4 * time.Second, true},
			{11, 10, 5 * time.Second, true}, {17, 16, 5 * time.Second, true},
			{300, 17, time.Second, true}, // ran 283s > reset_after: back to the first backoff
		}},
		{"failure-rate", RestartConfig{Strategy: RestartFailureRate, MaxFailures: 2, Interval: 10 * time.Second, Delay: time.Second}, []step{
			{1, 0, time.Second, true}, {5, 2, time.Second, true}, {8, 6, 0, false},
		}},
		{"failure-rate-window-slides", RestartConfig{Strategy: RestartFailureRate, MaxFailures: 1, Interval: 10 * time.Second, Delay: time.Second}, []step{
			{1, 0, time.Second, true}, {12, 2, time.Second, true}, {30, 13, time.Second, true},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.cfg.WithDefaults().Validate("restart"); err != nil {
				t.Fatal(err)
			}
			p := NewRestartPolicy(tc.cfg, 1)
			for i, s := range tc.steps {
				d, ok, why := p.OnFailure(at(s.now), at(s.started))
				if diff := d - s.delay; ok != s.ok || (ok && (diff > time.Microsecond || diff < -time.Microsecond)) {
					t.Fatalf("failure %d: (%v, %v, %q), want (%v, %v)", i, d, ok, why, s.delay, s.ok)
				}
				if !ok && why == "" {
					t.Fatalf("failure %d: gave up without saying why", i)
				}
			}
		})
	}
}

func TestExponentialJitterStaysInBounds(t *testing.T) {
	cfg := RestartConfig{Strategy: RestartExponentialDelay, Delay: time.Second, MaxDelay: 8 * time.Second, Multiplier: 2, Jitter: 0.5}
	for seed := int64(1); seed <= 50; seed++ {
		p := NewRestartPolicy(cfg, seed)
		base := time.Second
		t0 := time.Now()
		for i := 0; i < 10; i++ {
			d, ok, _ := p.OnFailure(t0.Add(time.Duration(i)*time.Second), t0.Add(time.Duration(i)*time.Second))
			if !ok || d < base/2 || d > min(base*3/2, 8*time.Second) {
				t.Fatalf("seed %d failure %d: delay %v outside [%v, %v]", seed, i, d, base/2, min(base*3/2, 8*time.Second))
			}
			base = min(base*2, 8*time.Second)
		}
	}
}

func TestRestartConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  RestartConfig
		want string
	}{
		{RestartConfig{Strategy: "sometimes"}, "restart.strategy"},
		{RestartConfig{Strategy: RestartFixedDelay, Attempts: -1}, "restart.attempts"},
		{RestartConfig{Strategy: RestartExponentialDelay, Delay: time.Minute, MaxDelay: time.Second}, "restart.max_delay"},
		{RestartConfig{Strategy: RestartExponentialDelay, Multiplier: 0.5}, "restart.multiplier"},
		{RestartConfig{Strategy: RestartExponentialDelay, Jitter: 2}, "restart.jitter"},
	} {
		err := tc.cfg.WithDefaults().Validate("restart")
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error about %s", tc.cfg, err, tc.want)
		}
	}
}
