package supervisor

import (
	"fmt"
	"math/rand"
	"time"
)

// RestartStrategy names how a failed job is restarted (Flink's
// restart-strategy.type).
type RestartStrategy string

// Restart strategies.
const (
	RestartNone             RestartStrategy = "none"
	RestartFixedDelay       RestartStrategy = "fixed-delay"
	RestartExponentialDelay RestartStrategy = "exponential-delay"
	RestartFailureRate      RestartStrategy = "failure-rate"
)

// RestartConfig configures a restart strategy. Zero fields take Flink's
// defaults (see WithDefaults).
type RestartConfig struct {
	Strategy RestartStrategy
	// Attempts (fixed-delay): restarts allowed in all; the next failure
	// ends the job.
	Attempts int
	// Delay (fixed-delay, failure-rate): wait before each restart;
	// (exponential-delay): the first backoff.
	Delay time.Duration
	// MaxDelay (exponential-delay): the backoff never grows past it.
	MaxDelay time.Duration
	// Multiplier (exponential-delay): backoff growth per failure.
	Multiplier float64
	// ResetAfter (exponential-delay): a run that lasted this long without
	// failing resets the backoff to Delay.
	ResetAfter time.Duration
	// Jitter (exponential-delay): the backoff varies by up to this
	// fraction either way, so that many jobs do not restart in step.
	Jitter float64
	// Interval and MaxFailures (failure-rate): more than MaxFailures
	// failures within Interval end the job.
	Interval    time.Duration
	MaxFailures int
}

// WithDefaults fills in Flink's defaults for the strategy.
func (c RestartConfig) WithDefaults() RestartConfig {
	if c.Strategy == "" {
		c.Strategy = RestartNone
	}
	if c.Delay == 0 {
		c.Delay = time.Second
	}
	switch c.Strategy {
	case RestartFixedDelay:
		if c.Attempts == 0 {
			c.Attempts = 1
		}
	case RestartExponentialDelay:
		if c.MaxDelay == 0 {
			c.MaxDelay = time.Minute
		}
		if c.Multiplier == 0 {
			c.Multiplier = 1.5
		}
		if c.ResetAfter == 0 {
			c.ResetAfter = time.Hour
		}
		if c.Jitter == 0 {
			c.Jitter = 0.1
		}
	case RestartFailureRate:
		if c.Interval == 0 {
			c.Interval = time.Minute
		}
		if c.MaxFailures == 0 {
			c.MaxFailures = 1
		}
	}
	return c
}

// Validate reports the first wrong field; key prefixes the names.
func (c RestartConfig) Validate(key string) error {
	switch c.Strategy {
	case RestartNone, RestartFixedDelay, RestartExponentialDelay, RestartFailureRate:
	default:
		return fmt.Errorf("%s.strategy: %q is not a strategy; use none, fixed-delay, exponential-delay or failure-rate", key, c.Strategy)
	}
	switch {
	case c.Attempts < 0:
		return fmt.Errorf("%s.attempts: must not be negative, got %d", key, c.Attempts)
	case c.Delay < 0:
		return fmt.Errorf("%s.delay: must not be negative, got %v", key, c.Delay)
	case c.MaxDelay < 0:
		return fmt.Errorf("%s.max_delay: must not be negative, got %v", key, c.MaxDelay)
	case c.Strategy == RestartExponentialDelay && c.MaxDelay < c.Delay:
		return fmt.Errorf("%s.max_delay: %v is less than delay %v", key, c.MaxDelay, c.Delay)
	case c.Strategy == RestartExponentialDelay && c.Multiplier < 1:
		return fmt.Errorf("%s.multiplier: must be at least 1, got %v", key, c.Multiplier)
	case c.Jitter < 0 || c.Jitter > 1:
		return fmt.Errorf("%s.jitter: must be between 0 and 1, got %v", key, c.Jitter)
	case c.ResetAfter < 0:
		return fmt.Errorf("%s.reset_after: must not be negative, got %v", key, c.ResetAfter)
	case c.Interval < 0:
		return fmt.Errorf("%s.interval: must not be negative, got %v", key, c.Interval)
	case c.MaxFailures < 0:
		return fmt.Errorf("%s.max_failures: must not be negative, got %d", key, c.MaxFailures)
	}
	return nil
}

// RestartPolicy decides, failure after failure, whether and when to
// restart. It is a pure core: time is passed in, randomness comes from the
// source it was built with.
type RestartPolicy struct {
	cfg      RestartConfig
	rng      *rand.Rand
	restarts int
	backoff  time.Duration
	failures []time.Time // failure-rate: failures within the interval
}

// NewRestartPolicy returns the policy for cfg (defaults applied); seed
// drives the jitter.
func NewRestartPolicy(cfg RestartConfig, seed int64) *RestartPolicy {
	cfg = cfg.WithDefaults()
	return &RestartPolicy{cfg: cfg, rng: rand.New(rand.NewSource(seed))}
}

// Config is the policy's configuration with defaults.
func (p *RestartPolicy) Config() RestartConfig { return p.cfg }

// Restarts counts the restarts granted so far.
func (p *RestartPolicy) Restarts() int { return p.restarts }

// OnFailure is called when the job failed at now after running since
// started. It returns how long to wait before restarting, or ok=false and
// why when the strategy gives up.
func (p *RestartPolicy) OnFailure(now, started time.Time) (delay time.Duration, ok bool, why string) {
	c := p.cfg
	switch c.Strategy {
	case RestartFixedDelay:
		if p.restarts >= c.Attempts {
			return 0, false, fmt.Sprintf("fixed-delay allows %d restarts and all were used", c.Attempts)
		}
		delay = c.Delay
	case RestartExponentialDelay:
		if p.backoff == 0 || now.Sub(started) >= c.ResetAfter {
			p.backoff = c.Delay
		} else {
			p.backoff = min(time.Duration(float64(p.backoff)*c.Multiplier), c.MaxDelay)
		}
		delay = p.backoff
		if c.Jitter > 0 && delay > 0 {
			j := (p.rng.Float64()*2 - 1) * c.Jitter * float64(delay)
			delay = min(max(delay+time.Duration(j), 0), c.MaxDelay)
		}
	case RestartFailureRate:
		kept := p.failures[:0]
		for _, f := range p.failures {
			if now.Sub(f) < c.Interval {
				kept = append(kept, f)
			}
		}
		p.failures = append(kept, now)
		if len(p.failures) > c.MaxFailures {
			return 0, false, fmt.Sprintf("failure-rate allows %d failures in %v and there were %d", c.MaxFailures, c.Interval, len(p.failures))
		}
		delay = c.Delay
	default:
		return 0, false, "restart strategy none"
	}
	p.restarts++
	return delay, true, ""
}
